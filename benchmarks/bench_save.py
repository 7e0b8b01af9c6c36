"""Benchmark: the same bulk job through xai-images and its peers, against the fake server.

The job: P prompts, at most C in flight, n images each, every image ends as a file on disk. Each
runner (``benchmarks/runners/*.py``) runs in its own subprocess, so its peak RSS and CPU seconds
are its own; the fake xAI server (``python -m xai_images.testing``) runs in another subprocess,
started once per scenario, on 127.0.0.1; the xai_sdk runner (gRPC) talks to ``_grpc_fake.py``,
started for each of its runs, whose url-mode images come from that REST fake. The harness
prints one markdown table (absolute figures and ratios to the hand-written aiohttp floor) and a
table of the targets, from one run.

Usage::

    pip install -e '.[bench]'
    python benchmarks/bench_save.py --scenario all            # about 5-10 minutes on 2 cores
    python benchmarks/bench_save.py --scenario throughput --modes url \\
        --runners floor_aiohttp,xai_images
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RUNNERS_DIR = HERE / "runners"
RUNNERS = {
    "floor_aiohttp": RUNNERS_DIR / "floor_aiohttp.py",
    "openai_httpx": RUNNERS_DIR / "openai_httpx.py",
    "openai_aiohttp": RUNNERS_DIR / "openai_aiohttp.py",
    "xai_sdk": RUNNERS_DIR / "xai_sdk_grpc.py",
    "xai_images": RUNNERS_DIR / "xai_images_sdk.py",
}
FLOOR = "floor_aiohttp"
SUBJECT = "xai_images"
# The official xai-sdk talks gRPC: its runner gets a gRPC fake of its own (``_grpc_fake.py``),
# started for each of its runs, whose url-mode images come from the REST fake above. The runner
# is left out, with a note, where xai-sdk is not installed (it is in the `bench` extra only).
XAI_SDK = "xai_sdk"
XAI_SDK_MISSING = importlib.util.find_spec("xai_sdk") is None
GRPC_FAKE = HERE / "_grpc_fake.py"
DEFAULT_RUNNERS = tuple(r for r in RUNNERS if not (r == XAI_SDK and XAI_SDK_MISSING))
SKIP_NOTE = f"{XAI_SDK}: skipped, xai-sdk is not installed (pip install -e '.[bench]' installs it)"
# With --baseline DIR: the same runner, importing the xai_images package found in DIR (an older
# copy, e.g. `git archive <commit> xai_images | tar -x -C DIR`), for before/after in one run.
BEFORE = "xai_images_before"
MODES = ("url", "b64_json")

# Targets from the issue.
STALL_TARGET_MS = 10.0
RSS_MARGIN_MB = 25.0
CEILING_SHARE = 0.95
# Issue 22: images/s against xai-sdk in the throughput scenario.
PEER_SPEEDUP = {"url": 1.3, "b64_json": 1.1}
# "No growth" from P=1000 to P=10000, with room for allocator noise.
SCALE_GROWTH_MB = 5.0


@dataclass(frozen=True)
class Scenario:
    """One server configuration and one job shape."""

    name: str
    prompts: int
    concurrency: int
    n: int
    image_bytes: int
    generation_latency: float = 0.0
    download_latency: float = 0.0
    runners: tuple[str, ...] = DEFAULT_RUNNERS
    modes: tuple[str, ...] = MODES
    # The scale scenario runs the same job at several P and compares peak RSS.
    prompt_steps: tuple[int, ...] = ()


DEFAULTS = {
    "throughput": Scenario("throughput", prompts=1000, concurrency=128, n=4, image_bytes=500_000),
    "latency": Scenario(
        "latency",
        prompts=100,
        concurrency=16,
        n=4,
        image_bytes=2_000_000,
        generation_latency=0.5,
        download_latency=0.05,
    ),
    # Small images: the question is whether memory grows with P, not bandwidth.
    "scale": Scenario(
        "scale",
        prompts=1000,
        concurrency=128,
        n=1,
        image_bytes=8_192,
        runners=(FLOOR, SUBJECT),
        prompt_steps=(1000, 10000),
    ),
}


@dataclass
class Run:
    """One runner's result for one scenario, mode and P (the runner's JSON plus file checks)."""

    scenario: str
    mode: str
    runner: str
    prompts: int
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def get(self, key: str) -> float:
        return float(self.result.get(key, math.nan))


# --------------------------------------------------------------------------- the fake server


class _FakeProcess:
    """A fake server in a subprocess: started, its stdout drained in a thread, stopped by Ctrl-C.

    ``__enter__`` waits for the first stdout line matching ``ready`` and keeps the match.
    """

    ready = re.compile("")

    def __init__(self, command: list[str]) -> None:
        self.command = command
        self.proc: subprocess.Popen[str] | None = None
        self.match: re.Match[str] | None = None
        self.lines: list[str] = []
        self._drained = threading.Event()

    def __enter__(self) -> _FakeProcess:
        self.proc = subprocess.Popen(
            self.command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        found = threading.Event()

        def drain() -> None:
            assert self.proc is not None
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                if len(self.lines) < 200:
                    self.lines.append(line)
                m = self.ready.search(line)
                if m and not found.is_set():
                    self.match = m
                    found.set()
            found.set()
            self._drained.set()

        threading.Thread(target=drain, daemon=True).start()
        if not found.wait(60) or self.match is None:
            self.__exit__(None, None, None)
            name = shlex.join(self.command[:3])
            raise RuntimeError(f"{name} did not start:\n" + "".join(self.lines))
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        # Ctrl-C is the fakes' documented clean stop.
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._drained.wait(5)


class FakeServer(_FakeProcess):
    """``python -m xai_images.testing`` (the REST fake every runner but xai_sdk talks to)."""

    ready = re.compile(r"http://127\.0\.0\.1:\d+/v1")

    def __init__(self, sc: Scenario, image_format: str, command: str | None = None) -> None:
        self.image_format = image_format
        base = shlex.split(command) if command else [sys.executable, "-m", "xai_images.testing"]
        super().__init__(
            [
                *base,
                "--port",
                str(_free_port()),
                "--image-bytes",
                str(sc.image_bytes),
                "--generation-latency",
                str(sc.generation_latency),
                "--download-latency",
                str(sc.download_latency),
                "--format",
                image_format,
            ]
        )

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else -1

    @property
    def base_url(self) -> str:
        return self.match.group(0) if self.match else ""


class GrpcFake(_FakeProcess):
    """``benchmarks/_grpc_fake.py`` for one xai_sdk run: the same image size, format and
    generation latency as the REST fake, whose image host serves its url-mode images."""

    ready = re.compile(r"on (127\.0\.0\.1:\d+)")

    def __init__(self, sc: Scenario, rest: FakeServer) -> None:
        super().__init__(
            [
                sys.executable,
                str(GRPC_FAKE),
                "--rest-url",
                rest.base_url,
                "--image-bytes",
                str(sc.image_bytes),
                "--format",
                rest.image_format,
                "--generation-latency",
                str(sc.generation_latency),
            ]
        )

    @property
    def address(self) -> str:
        return "grpc://" + (self.match.group(1) if self.match else "")

    def report(self) -> dict[str, Any]:
        """The JSON line the fake printed when stopped (its CPU seconds, rpcs and images)."""
        for line in reversed(self.lines):
            if line.startswith("{"):
                return dict(json.loads(line))
        return {}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- running a runner


def run_one(
    sc: Scenario,
    server: FakeServer,
    runner: str,
    mode: str,
    tmp_root: str | None,
    runner_env: dict[str, str] | None = None,
) -> Run:
    """Run one runner once in its own process and check the files it left.

    The xai_sdk runner talks to a gRPC fake started for this run only (outside the runner's
    timing). The fakes' CPU seconds during the run (the REST fake's, plus the gRPC fake's) are
    kept as ``fake_cpu_s``: they share the cores with the runner.
    """
    rest0 = _proc_cpu_s(server.pid)
    if runner != XAI_SDK:
        run = _run_one(sc, server.base_url, runner, mode, tmp_root, runner_env)
        grpc_cpu = 0.0
    else:
        with GrpcFake(sc, server) as grpc_fake:
            run = _run_one(sc, grpc_fake.address, runner, mode, tmp_root, runner_env)
        grpc_cpu = float(grpc_fake.report().get("cpu_s", math.nan))
        run.result["grpc_fake_cpu_s"] = grpc_cpu
    run.result["fake_cpu_s"] = _proc_cpu_s(server.pid) - rest0 + grpc_cpu
    return run


def _proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) of a live process, from /proc; NaN elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    # After the command name: state is field 3, utime 14 and stime 15 (proc(5)).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _run_one(
    sc: Scenario,
    base_url: str,
    runner: str,
    mode: str,
    tmp_root: str | None,
    runner_env: dict[str, str] | None,
) -> Run:
    run = Run(sc.name, mode, runner, sc.prompts)
    out = tempfile.mkdtemp(prefix=f"bench-{runner}-", dir=tmp_root)
    try:
        cmd = [
            sys.executable,
            str(RUNNERS[runner]),
            "--base-url",
            base_url,
            "--mode",
            mode,
            "--prompts",
            str(sc.prompts),
            "--concurrency",
            str(sc.concurrency),
            "--n",
            str(sc.n),
            "--out",
            out,
        ]
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=900, check=False, env=runner_env
            )
        except subprocess.TimeoutExpired:
            run.error = "timed out after 900 s"
            return run
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            run.error = f"exit {proc.returncode}: " + " | ".join(tail)
            return run
        run.result = json.loads(lines[-1])
        files = bytes_on_disk = leftovers = 0
        for entry in os.scandir(out):
            if entry.name.startswith("."):
                leftovers += 1
            else:
                files += 1
                bytes_on_disk += entry.stat().st_size
        expected = sc.prompts * sc.n
        run.result.update(files=files, bytes_on_disk=bytes_on_disk, leftovers=leftovers)
        if files != expected or leftovers:
            run.error = f"{files} files on disk (expected {expected}), {leftovers} leftovers"
        return run
    finally:
        shutil.rmtree(out, ignore_errors=True)
        # Let the kernel finish writeback now, so that the next runner does not pay for this
        # one's dirty pages (a blocking write() is throttled when too many are pending).
        os.sync()


def _runner_env(args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    if args.xai_downloads:
        env["BENCH_XAI_DOWNLOADS"] = str(args.xai_downloads)
    if args.xai_chunk_size:
        env["BENCH_XAI_CHUNK_SIZE"] = str(args.xai_chunk_size)
    return env


def pick_median(runs: list[Run]) -> Run:
    """The repeat with the median images/s (all figures of a row come from that one run)."""
    good = [r for r in runs if r.error is None]
    if not good:
        return runs[-1]
    good.sort(key=lambda r: r.get("images_per_s"))
    return good[(len(good) - 1) // 2]


def run_scenario(sc: Scenario, args: argparse.Namespace) -> list[Run]:
    """Start the fake for this scenario, run every runner and mode ``repeat`` times."""
    chosen: list[Run] = []
    steps = sc.prompt_steps or (sc.prompts,)
    with FakeServer(sc, args.format, args.fake_command) as server:
        for prompts in steps:
            shaped = replace(sc, prompts=prompts)
            for mode in sc.modes:
                tries: dict[str, list[Run]] = {r: [] for r in sc.runners}
                for rep in range(args.repeat):
                    # Rotate the order so drift (page cache, disk writeback) is spread evenly.
                    order = list(sc.runners)
                    k = rep % len(order)
                    for runner in order[k:] + order[:k]:
                        env = _runner_env(args)
                        if runner == BEFORE:
                            env["PYTHONPATH"] = args.baseline
                        r = run_one(shaped, server, runner, mode, args.tmp_dir, env)
                        tries[runner].append(r)
                        _log(r)
                chosen.extend(pick_median(tries[r]) for r in sc.runners)
    return chosen


def _log(r: Run) -> None:
    if r.error:
        msg = f"FAILED: {r.error}"
    else:
        msg = (
            f"{r.get('images_per_s'):8.1f} img/s  cpu {r.get('cpu_s'):6.2f} s  "
            f"rss {r.get('rss_peak_mb'):6.1f} MB  stall {r.get('stall_max_ms'):6.1f} ms"
        )
        msg += f"  fakes' cpu {r.get('fake_cpu_s'):5.2f} s"
    print(f"  {r.scenario:10} P={r.prompts:<6} {r.mode:8} {r.runner:15} {msg}", file=sys.stderr)


# --------------------------------------------------------------------------- the report


def _f(x: float, fmt: str = ".1f") -> str:
    return "n/a" if math.isnan(x) else format(x, fmt)


def results_table(runs: list[Run]) -> str:
    """One markdown table: absolute figures and the ratios to the floor of the same group."""
    head = (
        "| scenario | P | mode | runner | images/s | x floor | MB/s | CPU s | CPU ms/img "
        "| peak RSS MB | RSS - floor MB | worst stall ms | p99 stall ms | iter CPU max ms "
        "| iters > 10 ms CPU | fakes' CPU s |\n"
        "|---|--:|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n"
    )
    rows = []
    floors = {(r.scenario, r.prompts, r.mode): r for r in runs if r.runner == FLOOR and not r.error}
    for r in runs:
        if r.error:
            rows.append(
                f"| {r.scenario} | {r.prompts} | {r.mode} | {r.runner} | FAILED: {r.error} "
                "| | | | | | | | | | | |"
            )
            continue
        fl = floors.get((r.scenario, r.prompts, r.mode))
        ratio = r.get("images_per_s") / fl.get("images_per_s") if fl else math.nan
        drss = r.get("rss_peak_mb") - fl.get("rss_peak_mb") if fl else math.nan
        cpu_ms = r.get("cpu_s") * 1000.0 / max(1.0, r.get("images"))
        rows.append(
            f"| {r.scenario} | {r.prompts} | {r.mode} | {r.runner} | {_f(r.get('images_per_s'))} "
            f"| {_f(ratio, '.2f')} | {_f(r.get('mb_per_s'))} | {_f(r.get('cpu_s'), '.2f')} "
            f"| {_f(cpu_ms, '.2f')} | {_f(r.get('rss_peak_mb'))} | {_f(drss, '+.1f')} "
            f"| {_f(r.get('stall_max_ms'))} | {_f(r.get('stall_p99_ms'), '.2f')} "
            f"| {_f(r.get('iter_cpu_max_ms'))} | {_f(r.get('iters_over_10ms_cpu'), '.0f')} "
            f"| {_f(r.get('fake_cpu_s'), '.2f')} |"
        )
    return head + "\n".join(rows) + "\n"


def _find(
    runs: list[Run], scenario: str, mode: str, runner: str, prompts: int | None = None
) -> Run:
    for r in runs:
        if (
            r.scenario == scenario
            and r.mode == mode
            and r.runner == runner
            and (prompts is None or r.prompts == prompts)
            and not r.error
        ):
            return r
    raise KeyError((scenario, mode, runner, prompts))


def targets_table(runs: list[Run], scenarios: dict[str, Scenario]) -> str:
    """The issue's targets for xai-images, each with its measured figure and a verdict."""
    rows: list[tuple[str, str, str, bool | None]] = []

    def check(name: str, want: str, got: str, ok: bool | None) -> None:
        rows.append((name, want, got, ok))

    for sc in scenarios.values():
        for mode in sc.modes:
            steps = sc.prompt_steps or (sc.prompts,)
            try:
                x = _find(runs, sc.name, mode, SUBJECT, steps[0])
            except KeyError:
                continue
            tag = f"{sc.name} {mode}"
            try:
                fl = _find(runs, sc.name, mode, FLOOR, steps[0])
            except KeyError:
                fl = None
            if sc.name == "throughput" and fl is not None:
                ratio = x.get("images_per_s") / fl.get("images_per_s")
                check(f"{tag}: speed", ">= floor", f"{ratio:.2f} x floor", ratio >= 1.0)
            if sc.name == "throughput":
                with contextlib.suppress(KeyError):
                    peer = _find(runs, sc.name, mode, XAI_SDK, steps[0])
                    want = PEER_SPEEDUP[mode]
                    ratio = x.get("images_per_s") / peer.get("images_per_s")
                    check(
                        f"{tag}: speed against xai-sdk",
                        f">= {want:.1f} x xai_sdk",
                        f"{ratio:.2f} x xai_sdk",
                        ratio >= want,
                    )
            if sc.name == "latency":
                lat = sc.generation_latency + (sc.download_latency if mode == "url" else 0.0)
                ceiling = sc.concurrency * sc.n / lat
                waves = math.ceil(sc.prompts / sc.concurrency)
                wave_bound = sc.prompts * sc.n / (waves * lat)
                got = x.get("images_per_s")
                check(
                    f"{tag}: ceiling C*n/latency = {ceiling:.1f} img/s",
                    f">= {CEILING_SHARE:.0%} of ceiling",
                    f"{got / ceiling:.1%} (of the {waves}-wave bound {wave_bound:.1f}: "
                    f"{got / wave_bound:.1%})",
                    got >= CEILING_SHARE * ceiling,
                )
                if fl is not None:
                    floor_got = fl.get("images_per_s")
                    check(
                        f"{sc.name} {mode}: the floor against the same ceiling",
                        "(what this machine allows)",
                        f"{floor_got / ceiling:.1%} "
                        f"(of the wave bound: {floor_got / wave_bound:.1%})",
                        None,
                    )
            if sc.name != "scale":
                stall = x.get("stall_max_ms")
                check(
                    f"{tag}: worst loop stall",
                    f"<= {STALL_TARGET_MS:.0f} ms",
                    f"{stall:.1f} ms",
                    stall <= STALL_TARGET_MS,
                )
                if fl is not None:
                    delta = x.get("rss_peak_mb") - fl.get("rss_peak_mb")
                    check(
                        f"{tag}: peak RSS",
                        f"<= floor + {RSS_MARGIN_MB:.0f} MB",
                        f"floor {delta:+.1f} MB",
                        delta <= RSS_MARGIN_MB,
                    )
            if sc.prompt_steps:
                lo, hi = sc.prompt_steps[0], sc.prompt_steps[-1]
                for runner in sc.runners:
                    try:
                        a = _find(runs, sc.name, mode, runner, lo)
                        b = _find(runs, sc.name, mode, runner, hi)
                    except KeyError:
                        continue
                    growth = b.get("rss_peak_mb") - a.get("rss_peak_mb")
                    check(
                        f"{sc.name} {mode}: {runner} RSS growth P={lo} -> P={hi}",
                        f"none (<= {SCALE_GROWTH_MB:.0f} MB noise)",
                        f"{growth:+.1f} MB",
                        growth <= SCALE_GROWTH_MB if runner == SUBJECT else None,
                    )
    lines = ["| target (xai_images) | wanted | measured | verdict |", "|---|---|---|---|"]
    for name, want, measured, ok in rows:
        verdict = "for comparison" if ok is None else "PASS" if ok else "MISS"
        lines.append(f"| {name} | {want} | {measured} | {verdict} |")
    return "\n".join(lines) + "\n"


def machine() -> str:
    """A one-line description of the machine, for the README."""
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for dist in ("xai-images", "aiohttp", "openai", "httpx2", "httpx", "xai-sdk", "grpcio"):
        with contextlib.suppress(PackageNotFoundError):
            parts.append(f"{dist} {version(dist)}")
    return ", ".join(parts)


# --------------------------------------------------------------------------- command line


def build_scenarios(args: argparse.Namespace) -> dict[str, Scenario]:
    """The selected scenarios, with the command line's overrides applied."""
    names = list(DEFAULTS) if args.scenario == "all" else [args.scenario]
    out = {}
    for name in names:
        sc = DEFAULTS[name]
        changes: dict[str, Any] = {}
        for key in ("prompts", "concurrency", "n", "image_bytes"):
            value = getattr(args, key)
            if value is not None:
                changes[key] = value
        if args.modes:
            changes["modes"] = tuple(args.modes.split(","))
        if args.runners:
            changes["runners"] = tuple(r for r in args.runners.split(",") if r)
        if sc.prompt_steps and args.scale_prompts:
            changes["prompt_steps"] = tuple(int(p) for p in args.scale_prompts.split(","))
        if args.baseline and BEFORE not in changes.get("runners", sc.runners):
            changes["runners"] = (*changes.get("runners", sc.runners), BEFORE)
        if sc.prompt_steps and "runners" in changes:
            changes["runners"] = tuple(
                r for r in changes["runners"] if r in (FLOOR, SUBJECT, BEFORE)
            )
        if XAI_SDK_MISSING and XAI_SDK in changes.get("runners", ()):
            changes["runners"] = tuple(r for r in changes["runners"] if r != XAI_SDK)
        sc = replace(sc, **changes)
        unknown = [r for r in sc.runners if r not in RUNNERS]
        if unknown:
            raise SystemExit(f"unknown runner(s) {unknown}; choose from {list(RUNNERS)}")
        out[name] = sc
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the selected scenarios and print the tables."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--scenario", choices=[*DEFAULTS, "all"], default="all")
    p.add_argument("--prompts", type=int, help="P (the scale scenario uses --scale-prompts)")
    p.add_argument("--concurrency", type=int, help="C: prompts in flight")
    p.add_argument("--n", type=int, help="images per prompt")
    p.add_argument("--image-bytes", type=int, help="size of each image the fake serves")
    p.add_argument("--modes", help="comma-separated: url,b64_json")
    p.add_argument("--runners", help=f"comma-separated, from {','.join(RUNNERS)}")
    p.add_argument("--scale-prompts", help="P values of the scale scenario (default 1000,10000)")
    p.add_argument(
        "--repeat", type=int, default=1, help="runs per row; the median by images/s is reported"
    )
    p.add_argument("--format", default="png", help="image format the fake serves")
    p.add_argument("--tmp-dir", help="where the runners write their files (deleted after)")
    p.add_argument("--xai-downloads", type=int, help="xai-images DownloadOptions.concurrency")
    p.add_argument("--xai-chunk-size", type=int, help="xai-images DownloadOptions.chunk_size")
    p.add_argument(
        "--fake-command",
        help="start this instead of `python -m xai_images.testing` (same flags are appended)",
    )
    p.add_argument(
        "--baseline",
        help="directory holding an older xai_images package: adds the runner "
        f"{BEFORE} (the same job with that copy), for before/after in one run",
    )
    p.add_argument("--json", help="also write every chosen run as JSON to this file")
    args = p.parse_args(argv)
    if XAI_SDK_MISSING:
        print(SKIP_NOTE, file=sys.stderr)
    if args.baseline:
        args.baseline = str(Path(args.baseline).resolve())
        RUNNERS[BEFORE] = RUNNERS[SUBJECT]
    scenarios = build_scenarios(args)

    started = time.perf_counter()
    runs: list[Run] = []
    for sc in scenarios.values():
        print(f"== {sc}", file=sys.stderr)
        runs.extend(run_scenario(sc, args))
    elapsed = time.perf_counter() - started

    command = "python benchmarks/bench_save.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    print(f"Command: `{command.strip()}`  ")
    print(
        f"Took {elapsed / 60:.1f} min; repeat={args.repeat} "
        "(each row is the median run by images/s)  "
    )
    print(f"Machine: {machine()}  ")
    print(f"Versions: {_versions()}  ")
    if XAI_SDK_MISSING:
        print(f"Note: {SKIP_NOTE}  ")
    print()
    for sc in scenarios.values():
        lat = f", generation {sc.generation_latency} s, download {sc.download_latency} s"
        steps = "/".join(str(s) for s in sc.prompt_steps) if sc.prompt_steps else sc.prompts
        print(
            f"- {sc.name}: P={steps}, C={sc.concurrency}, n={sc.n}, "
            f"{sc.image_bytes / 1e3:g} kB {args.format} images"
            + (lat if sc.generation_latency or sc.download_latency else ", no latency")
        )
    print()
    print(results_table(runs))
    print(
        "fakes' CPU s: the fake servers' CPU seconds during the run, on the same cores as the "
        "runner (the REST fake; for xai_sdk, plus its gRPC fake).\n"
    )
    print(targets_table(runs, scenarios))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([r.__dict__ for r in runs], f, indent=1)
    medians = [r.get("images_per_s") for r in runs if not r.error]
    return 0 if medians and statistics.fmean(medians) > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
