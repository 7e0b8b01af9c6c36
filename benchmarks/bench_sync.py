"""Benchmark: the sync ``Client`` against the ``AsyncClient`` on the same job, in one run.

The job: P prompts, one image each (500 kB by default), every image saved to disk, at most C
prompts in flight. The async side runs C tasks on its event loop; the sync side runs the same
calls from a pool of C threads sharing one ``Client``, each call hopping to the client's loop
thread and back (``generate`` and ``save``: two hops per image). ``--job batch`` runs the bulk
engine instead (``client.bulk``; one hop per outcome on the sync side).

Each measurement runs in its own subprocess (so peak RSS and CPU seconds are its own), against
the fake server (``python -m xai_images.testing``) in another subprocess; sync and async runs
alternate, and the median of ``--repeat`` runs is reported. The target: the sync client keeps at
least 90 % of the async throughput.

Usage::

    python benchmarks/bench_sync.py                      # url and b64_json, 200 x 500 kB
    python benchmarks/bench_sync.py --modes url --prompts 500 --repeat 5 --job batch
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

TARGET = 0.90


def _prompt(i: int) -> str:
    return f"benchmark prompt number {i}: a lighthouse on a cliff at dusk"


# --------------------------------------------------------------------------- one measurement


async def _async_calls(args: argparse.Namespace) -> int:
    import xai_images

    # C worker tasks pulling prompts, the exact counterpart of the sync side's C threads (a
    # task per prompt behind a semaphore costs more CPU, so it would flatter the sync side).
    prompts = iter(range(args.prompts))
    async with xai_images.AsyncClient(args.api_key, base_url=args.base_url) as client:

        async def worker() -> int:
            saved = 0
            for i in prompts:
                response = await client.images.generate(_prompt(i), response_format=args.mode)
                saved += len(await response.save(args.out))
            return saved

        return sum(await asyncio.gather(*(worker() for _ in range(args.concurrency))))


def _sync_calls(args: argparse.Namespace) -> int:
    import xai_images

    with xai_images.Client(args.api_key, base_url=args.base_url) as client:

        def one(i: int) -> int:
            response = client.images.generate(_prompt(i), response_format=args.mode)
            return len(response.save(args.out))

        with ThreadPoolExecutor(args.concurrency) as pool:
            return sum(pool.map(one, range(args.prompts)))


def _jobs(args: argparse.Namespace) -> list[dict[str, Any]]:
    return [
        {"prompt": _prompt(i), "id": f"p{i}", "response_format": args.mode}
        for i in range(args.prompts)
    ]


async def _async_batch(args: argparse.Namespace) -> int:
    import xai_images

    async with xai_images.AsyncClient(args.api_key, base_url=args.base_url) as client:
        run = client.bulk(_jobs(args), output_dir=args.out, concurrency=args.concurrency)
        return sum(len(o.files) for o in await run.collect())


def _sync_batch(args: argparse.Namespace) -> int:
    import xai_images

    with xai_images.Client(args.api_key, base_url=args.base_url) as client:
        run = client.bulk(_jobs(args), output_dir=args.out, concurrency=args.concurrency)
        return sum(len(o.files) for o in run.collect())


def _measure(args: argparse.Namespace) -> dict[str, float]:
    import xai_images  # imported before the clock starts, as in a real program

    del xai_images
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    if args.client == "async":
        runner = _async_calls if args.job == "calls" else _async_batch
        images = asyncio.run(runner(args))
    else:
        images = (_sync_calls if args.job == "calls" else _sync_batch)(args)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # ru_maxrss is in KiB on Linux, in bytes on macOS.
    scale = 1 if sys.platform == "darwin" else 1024
    return {
        "images": images,
        "seconds": elapsed,
        "images_per_s": images / elapsed,
        "cpu_s": cpu,
        "peak_rss_mb": after.ru_maxrss * scale / 1e6,
    }


def _hop_cost(calls: int = 20_000, threads: int = 16) -> dict[str, float]:
    """Wall and CPU microseconds of one round trip to the client's loop thread and back."""
    import xai_images

    async def nothing() -> None:
        return None

    out: dict[str, float] = {}
    with xai_images.Client("unused-key", base_url="http://127.0.0.1:9/v1") as client:
        loop = client._loop  # the private loop thread: the hop alone, without any API work
        for label, workers in (("1 thread", 1), (f"{threads} threads", threads)):
            started, cpu = time.perf_counter(), time.process_time()
            with ThreadPoolExecutor(workers) as pool:
                for _ in pool.map(lambda _: loop.call(nothing), range(calls)):
                    pass
            out[f"{label} wall"] = (time.perf_counter() - started) / calls * 1e6
            out[f"{label} cpu"] = (time.process_time() - cpu) / calls * 1e6
    return out


# --------------------------------------------------------------------------- the harness


class _FakeServer:
    """``python -m xai_images.testing`` in a subprocess."""

    def __init__(self, image_bytes: int) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "xai_images.testing",
                "--port",
                str(port),
                "--image-bytes",
                str(image_bytes),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:\d+/v1", line)
        if not found:
            self.stop()
            raise RuntimeError(f"the fake server did not start: {line!r}")
        self.base_url = found.group(0)
        # Keep draining its output so that it never blocks on a full pipe.
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _run_worker(opts: argparse.Namespace, base_url: str, client: str, mode: str) -> dict[str, Any]:
    out = tempfile.mkdtemp(prefix="bench-sync-", dir=opts.tmp)
    try:
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            "--client",
            client,
            "--job",
            opts.job,
            "--mode",
            mode,
            "--prompts",
            str(opts.prompts),
            "--concurrency",
            str(opts.concurrency),
            "--base-url",
            base_url,
            "--out",
            out,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{client} {mode} failed:\n{proc.stdout}\n{proc.stderr}")
        result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        files = [p for p in Path(out).rglob("*.png")]
        if len(files) != opts.prompts or result["images"] != opts.prompts:
            raise RuntimeError(f"{client} {mode}: {len(files)} files for {opts.prompts} prompts")
        return result
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--image-bytes", type=int, default=500_000)
    parser.add_argument("--modes", default="url,b64_json")
    parser.add_argument("--job", choices=["calls", "batch"], default="calls")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tmp", default=None, help="where the images are written")
    # Worker mode (one measurement, run by the harness in a subprocess).
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client", choices=["async", "sync", "hop"], help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--api-key", default="xai-bench-key", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.worker:
        print(json.dumps(_hop_cost() if opts.client == "hop" else _measure(opts)))
        return 0

    print(
        f"# sync Client vs AsyncClient: {opts.prompts} prompts x 1 image of "
        f"{opts.image_bytes / 1000:.0f} kB, {opts.concurrency} in flight, job={opts.job}, "
        f"median of {opts.repeat}; Python {sys.version.split()[0]}, {os.cpu_count()} CPUs\n"
    )
    print("| mode | client | images/s (min-max) | CPU s | peak RSS MB | sync/async images/s |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    worst = float("inf")
    server = _FakeServer(opts.image_bytes)
    try:
        for mode in opts.modes.split(","):
            runs: dict[str, list[dict[str, Any]]] = {"async": [], "sync": []}
            _run_worker(opts, server.base_url, "async", mode)  # warm-up: the fake builds images
            for turn in range(opts.repeat):
                # Alternating who goes first, so that drift in the machine's load hits both.
                order = ("async", "sync") if turn % 2 == 0 else ("sync", "async")
                for client in order:
                    runs[client].append(_run_worker(opts, server.base_url, client, mode))
            ratio = _median(runs["sync"], "images_per_s") / _median(runs["async"], "images_per_s")
            worst = min(worst, ratio)
            for client in ("async", "sync"):
                shown = f"{ratio:.2f}" if client == "sync" else ""
                rates = [run["images_per_s"] for run in runs[client]]
                print(
                    f"| {mode} | {client} | {statistics.median(rates):.0f} "
                    f"({min(rates):.0f}-{max(rates):.0f}) | "
                    f"{_median(runs[client], 'cpu_s'):.2f} | "
                    f"{_median(runs[client], 'peak_rss_mb'):.0f} | {shown} |"
                )
    finally:
        server.stop()
    hop = json.loads(
        subprocess.run(
            [sys.executable, __file__, "--worker", "--client", "hop"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    print("\none hop to the client's loop thread and back (a call doing nothing), microseconds:")
    print(", ".join(f"{key} {value:.0f}" for key, value in hop.items()))
    verdict = "met" if worst >= TARGET else "NOT met"
    print(f"\ntarget: sync keeps >= {TARGET:.0%} of async images/s: {verdict} (worst {worst:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
