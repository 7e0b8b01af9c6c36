"""Benchmark: xai-images inside a web backend, where the SDK shares the event loop with the app.

The scenario: an ``aiohttp.web`` app (its own process, on 127.0.0.1) whose handler awaits
``client.images.generate`` through one shared ``AsyncClient``; a load generator (this harness, a
separate process) sends R requests at concurrency C; the fake xAI server
(``python -m xai_images.testing``, a third process) answers after a fixed generation latency.
Measured inside the app process, over the load only:

- event-loop lag: a task sleeps 1 ms in a loop and records how late it wakes (max, p99 over
  ticks; ">10 ms": ticks late by more than 10 ms);
- the loop thread's CPU time per event-loop iteration ("iter CPU"): one iteration runs every
  ready callback, so this is what the app's and the SDK's callbacks (and garbage collections)
  hold the loop for, without the time the OS gave to other processes (on a shared 2-core
  machine, most of the worst lag is the app process waiting for a core);
- garbage-collector passes (longest, wall time);
- the ``generate`` call's duration (p50/p99) and the SDK's overhead: the duration minus the
  fake's generation latency ("over"), and the difference to a bare-aiohttp handler (same POST,
  ``json.loads``, and ``b64decode`` in b64 mode) run in the same benchmark ("vs bare").

Handlers (``--handlers``): ``bare`` and ``sdk`` (generate only), ``bare_save`` and ``sdk_save``
(each image also ends as a file: ``resp.save(dir)`` for the SDK; for bare, a GET per URL or a
``b64decode``, and a plain blocking write). The burst (unless ``--no-burst``) starts 128
generate+save calls at once in the app with the bulk benchmark's shape (n=4, 500 kB images, no
latency) and reports the loop lag of that start.

``--diagnose`` adds a stall sampler (a thread that records the loop thread's Python stack while
the loop is late); ``--slow-callbacks`` turns on ``asyncio`` debug mode and collects its
slow-callback log (callbacks over 5 ms; debug mode itself slows the app several-fold);
``--profile DIR`` writes cProfile stats of the app process per run. These perturb the timing:
the figures in the table come from runs without them. Experiments: ``--warmup`` (the app's
connection pool is opened before measuring), ``--gc-freeze`` (``gc.freeze()`` in the app after
startup).

Usage::

    python benchmarks/bench_web.py                       # url and b64_json, all handlers, burst
    python benchmarks/bench_web.py --modes url --handlers bare,sdk --no-burst
    python benchmarks/bench_web.py --repeat 3 --json web.json     # the table in WEB-DIAGNOSIS.md
    python benchmarks/bench_web.py --diagnose --handlers sdk,sdk_save --json diag.json
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import json
import logging
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _loopprobe import GCWatch, IterationTimer, LagTicker, SlowCallbacks, StallSampler  # noqa: E402
from bench_save import FakeServer, Scenario  # noqa: E402

HANDLERS = ("bare", "sdk", "bare_save", "sdk_save")
MODES = ("url", "b64_json")
MODEL = "grok-imagine-image"


def prompt_text(i: int) -> str:
    return f"web benchmark prompt {i}: a lighthouse on a cliff at dusk"


# --------------------------------------------------------------------------- in the app process


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class App:
    """The web app under test: one handler kind, one shared client (or session) for all calls."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.ticker = LagTicker()
        self.gc = GCWatch()
        self.calls: list[float] = []  # seconds in generate (or the bare POST + parse)
        self.totals: list[float] = []  # seconds in the whole job (with saving)
        self.sampler: StallSampler | None = None
        self.iterations: IterationTimer | None = None
        self.slow = SlowCallbacks()
        self.profile: Any = None
        self.cpu0 = 0.0
        self.client: Any = None
        self.session: aiohttp.ClientSession | None = None
        self.counter = 0

    async def open(self) -> None:
        a = self.args
        if a.handler.startswith("sdk"):
            import xai_images

            self.client = xai_images.AsyncClient(a.api_key, base_url=a.base_url)
            await self.client.__aenter__()
        else:
            self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
        if self.session is not None:
            await self.session.close()

    async def job(self, i: int, n: int) -> int:
        """One call: generate (and save when the handler says so); returns bytes handled."""
        a = self.args
        t0 = time.perf_counter()
        if self.client is not None:
            resp = await self.client.images.generate(
                prompt_text(i), model=MODEL, n=n, response_format=a.mode
            )
            t1 = time.perf_counter()
            if a.handler.endswith("save") or a.burst:
                done = sum(s.bytes for s in await resp.save(a.out))
            else:
                done = sum(len(im.content or im.url or "") for im in resp.data)
        else:
            done, t1 = await self._bare(i, n, t0)
        self.calls.append(t1 - t0)
        self.totals.append(time.perf_counter() - t0)
        return done

    async def _bare(self, i: int, n: int, t0: float) -> tuple[int, float]:
        a = self.args
        assert self.session is not None
        body = {"model": MODEL, "prompt": prompt_text(i), "n": n, "response_format": a.mode}
        headers = {"Authorization": f"Bearer {a.api_key}"}
        async with self.session.post(
            a.base_url + "/images/generations", json=body, headers=headers
        ) as resp:
            items = json.loads(await resp.read())["data"]
        if a.mode == "b64_json":
            blobs = [base64.b64decode(it["b64_json"]) for it in items]
        t1 = time.perf_counter()
        if not (a.handler.endswith("save") or a.burst):
            return (sum(map(len, blobs)) if a.mode == "b64_json" else len(items)), t1
        self.counter += 1
        stem = f"{a.out}/{self.counter}"
        if a.mode == "url":

            async def fetch(url: str) -> bytes:
                async with self.session.get(url) as r:  # type: ignore[union-attr]
                    return await r.read()

            blobs = await asyncio.gather(*(fetch(it["url"]) for it in items))
        for k, blob in enumerate(blobs):
            _write_file(f"{stem}-{k}.png", blob)  # blocking, as hand-written code does
        return sum(map(len, blobs)), t1

    # -- routes

    async def handle(self, request: web.Request) -> web.Response:
        done = await self.job(int(request.query["i"]), self.args.n)
        return web.json_response({"bytes": done})

    async def reset(self, request: web.Request) -> web.Response:
        self.ticker.reset()
        self.calls.clear()
        self.totals.clear()
        self.gc.pauses.clear()
        self.slow.seen.clear()
        if self.sampler is not None:
            self.sampler.samples.clear()
        if self.iterations is not None:
            self.iterations.cpu = array("d")
            self.iterations.long = []
            self.iterations.started = time.perf_counter()
        if self.args.profile:
            import cProfile

            self.profile = cProfile.Profile()
            self.profile.enable()
        self.cpu0 = _cpu_s()
        return web.json_response({})

    async def stats(self, request: web.Request) -> web.Response:
        cpu = _cpu_s() - self.cpu0
        if self.profile is not None:
            self.profile.disable()
            self.profile.dump_stats(self.args.profile)
        a = self.args
        latency = a.latency
        out: dict[str, Any] = {
            **self.ticker.summary(),
            **self.gc.summary(),
            "calls": len(self.calls),
            "call_p50_ms": _pct(self.calls, 0.5) * 1e3,
            "call_p99_ms": _pct(self.calls, 0.99) * 1e3,
            "call_max_ms": max(self.calls, default=float("nan")) * 1e3,
            "overhead_p50_ms": (_pct(self.calls, 0.5) - latency) * 1e3,
            "overhead_p99_ms": (_pct(self.calls, 0.99) - latency) * 1e3,
            "total_p50_ms": _pct(self.totals, 0.5) * 1e3,
            "total_p99_ms": _pct(self.totals, 0.99) * 1e3,
            "app_cpu_s": cpu,
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            # What a full collection walks: its pause grows with this.
            "gc_tracked_objects": len(gc.get_objects()),
            "sdk_file": sys.modules["xai_images"].__file__ if "xai_images" in sys.modules else "",
        }
        if self.sampler is not None:
            out["stall_sources"] = self.sampler.report(self.ticker.stalls)
        if self.iterations is not None:
            out.update(self.iterations.summary())
        if self.args.slow_callbacks:
            out.update(self.slow.summary())
        return web.json_response(out)

    async def burst(self, request: web.Request) -> web.Response:
        """Start ``--burst-size`` generate+save calls at once; answer when all are done."""
        t0 = time.perf_counter()
        await asyncio.gather(*(self.job(i, self.args.n) for i in range(self.args.burst_size)))
        return web.json_response({"wall_s": time.perf_counter() - t0})


def _write_file(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def serve_app(args: argparse.Namespace) -> None:
    app_state = App(args)
    loop = asyncio.get_running_loop()
    if args.slow_callbacks:
        # Debug mode records where every future was created: it slows the app several-fold.
        loop.set_debug(True)
        loop.slow_callback_duration = 0.005
        asyncio_log = logging.getLogger("asyncio")
        asyncio_log.addHandler(app_state.slow)
        asyncio_log.propagate = False
    # Always on (one thread_time() per iteration): the CPU figure the machine's load cannot blur.
    app_state.iterations = IterationTimer(loop, app_state.gc)
    if args.diagnose:
        app_state.sampler = StallSampler(app_state.ticker, threading.get_ident())
        app_state.sampler.start()
    gc.callbacks.append(app_state.gc)
    await app_state.open()
    if args.gc_freeze:
        # What an app can do after startup: the objects alive now (imports, the client) leave
        # the collector's generations, so a full pass no longer walks them.
        gc.collect()
        gc.freeze()
    app = web.Application()
    app.router.add_get("/gen", app_state.handle)
    app.router.add_get("/reset", app_state.reset)
    app.router.add_get("/stats", app_state.stats)
    app.router.add_get("/burst", app_state.burst)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    ticker = asyncio.ensure_future(app_state.ticker.run())
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print(f"PORT {runner.addresses[0][1]}", flush=True)
    await stop.wait()
    ticker.cancel()
    await runner.cleanup()
    await app_state.close()


# --------------------------------------------------------------------------- in the harness


class AppProcess:
    """This script with ``--role app`` in a subprocess; stopped with SIGTERM."""

    def __init__(self, argv: list[str], sdk_path: str | None = None) -> None:
        env = dict(os.environ)
        if sdk_path:
            # An older copy of the package, imported instead of the installed one.
            env["PYTHONPATH"] = sdk_path
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--role", "app", *argv],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.proc.kill()
            raise RuntimeError(f"app did not start: {line!r}")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def load(url: str, requests: int, concurrency: int, warmup: bool) -> dict[str, Any]:
    """R requests at concurrency C (C workers), from this process; client-side figures.

    ``warmup``: first one wave of C requests, not measured, so that the app's connection pool
    to the API is already open (a long-running worker's state) when measuring starts.
    """
    latencies: list[float] = []
    errors = 0
    next_i = 0
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        if warmup:

            async def one(i: int) -> None:
                async with session.get(f"{url}/gen", params={"i": str(i)}) as r:
                    await r.read()

            await asyncio.gather(*(one(-1 - i) for i in range(concurrency)))
        await (await session.get(url + "/reset")).read()

        async def worker() -> None:
            nonlocal next_i, errors
            while next_i < requests:
                i, next_i = next_i, next_i + 1
                t0 = time.perf_counter()
                async with session.get(f"{url}/gen", params={"i": str(i)}) as r:
                    await r.read()
                    errors += r.status != 200
                latencies.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
        async with session.get(url + "/stats") as r:
            stats = await r.json()
    return {
        **stats,
        "requests": requests,
        "errors": errors,
        "req_per_s": requests / wall,
        "client_p50_ms": _pct(latencies, 0.5) * 1e3,
        "client_p99_ms": _pct(latencies, 0.99) * 1e3,
    }


async def burst(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
        await (await session.get(url + "/reset")).read()
        async with session.get(url + "/burst") as r:
            wall = (await r.json())["wall_s"]
        async with session.get(url + "/stats") as r:
            return {**(await r.json()), "wall_s": wall}


def run(
    args: argparse.Namespace,
    server: FakeServer,
    mode: str,
    handler: str,
    *,
    is_burst: bool,
    sdk_path: str | None = None,
) -> dict[str, Any]:
    out = tempfile.mkdtemp(prefix="bench-web-", dir=args.tmp_dir)
    latency = 0.0 if is_burst else args.latency
    argv = ["--base-url", server.base_url, "--mode", mode, "--handler", handler, "--out", out]
    argv += ["--latency", str(latency), "--n", str(args.burst_n if is_burst else args.n)]
    argv += ["--burst-size", str(args.burst_size)]
    if is_burst:
        argv.append("--burst")
    if args.diagnose:
        argv.append("--diagnose")
    if args.slow_callbacks:
        argv.append("--slow-callbacks")
    if args.gc_freeze:
        argv.append("--gc-freeze")
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
        kind = "burst" if is_burst else "web"
        argv += ["--profile", str(Path(args.profile) / f"{kind}-{mode}-{handler}.prof")]
    app = AppProcess(argv, sdk_path)
    try:
        if is_burst:
            result = asyncio.run(burst(app.url))
        else:
            result = asyncio.run(load(app.url, args.requests, args.concurrency, args.warmup))
    finally:
        app.stop()
        shutil.rmtree(out, ignore_errors=True)
        os.sync()  # the next run does not pay for this one's dirty pages
    kind = "burst" if is_burst else "web (warm pool)" if args.warmup else "web"
    if args.gc_freeze:
        kind += " (gc.freeze)"
    label = f"{handler} (before)" if sdk_path else handler
    result.update(mode=mode, handler=label, kind=kind)
    return result


def repeat(
    args: argparse.Namespace, server: FakeServer, mode: str, handler: str, *, is_burst: bool
) -> list[dict[str, Any]]:
    """``--repeat`` runs of one row; every figure is the median over them (the machine is shared,
    so one run's worst stall may be another process's time slice). With ``--baseline``, an SDK
    row is run with the older copy too, the two taking turns, and both rows are returned."""
    paths: list[str | None] = [None]
    if args.baseline and handler.startswith("sdk"):
        paths = [args.baseline, None]
    got: dict[str | None, list[dict[str, Any]]] = {p: [] for p in paths}
    for _ in range(args.repeat):
        for path in paths:
            got[path].append(run(args, server, mode, handler, is_burst=is_burst, sdk_path=path))
    return [_median_row(got[path]) for path in paths]


def _median_row(got: list[dict[str, Any]]) -> dict[str, Any]:
    for r in got:
        print(f"# {r['kind']} {r['mode']} {r['handler']}: {json.dumps(r)[:300]}", file=sys.stderr)
    row = dict(got[0])
    for key, value in got[0].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            row[key] = statistics.median(r[key] for r in got)
    row["runs"] = got
    return row


def table(runs: list[dict[str, Any]]) -> str:
    bare = {(r["kind"], r["mode"], r["handler"]): r for r in runs}
    head = (
        "| run | mode | handler | req/s | lag max | lag p99 | >10 ms | iter CPU max | iters >10 ms "
        "| gc max | call p50 | call p99 | over p50 | over p99 | vs bare p50 | vs bare p99 "
        "| app CPU s |"
    )
    lines = [head, "|" + " --- |" * 3 + " ---: |" * 14]
    for r in runs:
        ref = bare.get((r["kind"], r["mode"], r["handler"].split()[0].replace("sdk", "bare")))
        vs50 = vs99 = "-"
        if r["handler"].startswith("sdk") and ref is not None:
            vs50 = f"{r['call_p50_ms'] - ref['call_p50_ms']:+.1f}"
            vs99 = f"{r['call_p99_ms'] - ref['call_p99_ms']:+.1f}"
        rate = f"{r['req_per_s']:.0f}" if "req_per_s" in r else f"{r['wall_s']:.2f} s"
        lines.append(
            f"| {r['kind']} | {r['mode']} | {r['handler']} | {rate} | {r['lag_max_ms']:.1f} "
            f"| {r['lag_p99_ms']:.1f} | {r['stalls_over_10ms']} | {r['iter_cpu_max_ms']:.1f} "
            f"| {r['iters_over_10ms_cpu']} "
            f"| {r['gc_max_ms']:.1f} | {r['call_p50_ms']:.1f} | {r['call_p99_ms']:.1f} "
            f"| {r['overhead_p50_ms']:.1f} | {r['overhead_p99_ms']:.1f} | {vs50} | {vs99} "
            f"| {r['app_cpu_s']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--role", choices=["harness", "app"], default="harness")
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--handlers", default=",".join(HANDLERS))
    p.add_argument("--requests", type=int, default=500)
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--latency", type=float, default=0.2, help="fake generation latency (s)")
    p.add_argument("--image-bytes", type=int, default=100_000)
    p.add_argument("--n", type=int, default=1, help="images per request")
    p.add_argument("--repeat", type=int, default=1, help="runs per row (figures: medians)")
    p.add_argument(
        "--warmup", action="store_true", help="open the app's connections before measuring"
    )
    p.add_argument("--gc-freeze", action="store_true", help="gc.freeze() in the app after startup")
    p.add_argument("--no-burst", action="store_true")
    p.add_argument("--burst-size", type=int, default=128)
    p.add_argument("--burst-n", type=int, default=4)
    p.add_argument("--burst-image-bytes", type=int, default=500_000)
    p.add_argument("--diagnose", action="store_true", help="stall sampler: stacks during stalls")
    p.add_argument(
        "--slow-callbacks", action="store_true", help="asyncio debug mode's slow-callback log"
    )
    p.add_argument("--profile", help="directory for cProfile stats (one file per run)")
    p.add_argument(
        "--baseline",
        help="directory holding an older xai_images package: every SDK row also runs with it "
        "(labelled 'before'), taking turns with the installed one",
    )
    p.add_argument("--json", help="write every run's figures to this file")
    p.add_argument("--tmp-dir", help="where saved files go (deleted after each run)")
    # App role only.
    p.add_argument("--base-url")
    p.add_argument("--api-key", default="xai-bench-key")
    p.add_argument("--mode", choices=MODES)
    p.add_argument("--handler", choices=HANDLERS)
    p.add_argument("--out")
    p.add_argument("--burst", action="store_true")
    args = p.parse_args(argv)
    if args.baseline:
        args.baseline = str(Path(args.baseline).resolve())
    if args.role == "app":
        asyncio.run(serve_app(args))
        return 0
    modes = [m for m in args.modes.split(",") if m]
    handlers = [h for h in args.handlers.split(",") if h]
    runs: list[dict[str, Any]] = []
    started = time.perf_counter()
    web_sc = Scenario(
        "web", args.requests, args.concurrency, args.n, args.image_bytes, args.latency
    )
    burst_sc = Scenario(
        "burst", args.burst_size, args.burst_size, args.burst_n, args.burst_image_bytes
    )
    for mode in modes:
        with FakeServer(web_sc, "png") as server:
            for handler in handlers:
                runs.extend(repeat(args, server, mode, handler, is_burst=False))
        if args.no_burst:
            continue
        with FakeServer(burst_sc, "png") as server:
            for handler in ("bare_save", "sdk_save"):
                runs.extend(repeat(args, server, mode, handler, is_burst=True))
    print(
        f"web: {args.requests} requests at concurrency {args.concurrency}, n={args.n}, "
        f"{args.image_bytes} B images, generation latency {args.latency * 1e3:.0f} ms; "
        f"burst: {args.burst_size} generate+save at once, n={args.burst_n}, "
        f"{args.burst_image_bytes} B images, no latency. Times in ms; medians of "
        f"{args.repeat} run(s) per row; "
        f"{time.perf_counter() - started:.0f} s in all"
        f"{' (diagnose mode: timings perturbed)' if args.diagnose else ''}.\n"
    )
    print(table(runs))
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
