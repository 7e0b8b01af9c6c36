"""What every benchmark runner shares: arguments, the job driver, the loop-stall ticker, the report.

Standard library only: a runner's peak RSS must be that of its own client stack, so nothing here
may import a third-party package. Each runner script calls :func:`main` with one coroutine
function that does one prompt's whole job (generate, then every image ends as a file on disk).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import resource
import sys
import time
from array import array
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, suppress
from pathlib import Path
from typing import Any

__all__ = ["Args", "Job", "StallTicker", "drive", "main", "prompt_text", "write_file"]

# One prompt's job: given its index, generate and save; return the number of bytes written.
Job = Callable[[int], Awaitable[int]]


class Args:
    """The runner's command line, parsed (one scenario, one mode, one runner)."""

    def __init__(self, ns: argparse.Namespace) -> None:
        self.base_url: str = ns.base_url
        self.api_key: str = ns.api_key
        self.model: str = ns.model
        self.mode: str = ns.mode
        self.prompts: int = ns.prompts
        self.concurrency: int = ns.concurrency
        self.n: int = ns.n
        self.out = Path(ns.out)
        self.profile: str | None = ns.profile


def parse_args(argv: list[str] | None = None) -> Args:
    """Parse the arguments every runner takes (the harness passes them all)."""
    p = argparse.ArgumentParser()
    p.add_argument("--base-url", required=True)
    p.add_argument("--api-key", default="xai-bench-key")
    p.add_argument("--model", default="grok-imagine-image")
    p.add_argument("--mode", choices=["url", "b64_json"], required=True)
    p.add_argument("--prompts", type=int, required=True)
    p.add_argument("--concurrency", type=int, required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--out", required=True, help="existing empty directory for the image files")
    p.add_argument("--profile", default=None, help="write cProfile stats of the job to this file")
    return Args(p.parse_args(argv))


def prompt_text(i: int) -> str:
    """The i-th prompt of the job; the same for every runner."""
    return f"benchmark prompt number {i}: a lighthouse on a cliff at dusk"


def write_file(path: str, data: bytes) -> None:
    """Write a whole file with plain blocking calls, as a hand-written program does.

    The peers call this on the event loop on purpose: that is what their users write, and the
    stall it causes is part of what the benchmark measures.
    """
    with open(path, "wb") as f:
        f.write(data)


class StallTicker:
    """Measures how late the event loop wakes a task that sleeps 1 ms in a loop.

    Every runner pays the same baseline (timer granularity, the OS scheduler on a busy machine);
    what differs between runners is how long their own callbacks hold the loop (a big
    ``json.loads``, a ``b64decode`` of megabytes, a blocking file write).
    """

    interval = 0.001

    def __init__(self) -> None:
        self.samples = array("d")
        self.worst_at = 0.0  # seconds after start() when the worst stall ended
        self._started = 0.0
        self._worst = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._started = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        clock = time.monotonic
        while True:
            expected = clock() + self.interval
            await asyncio.sleep(self.interval)
            now = clock()
            late = max(0.0, now - expected)
            if late > self._worst:
                self._worst = late
                self.worst_at = now - self._started
            self.samples.append(late)

    def summary(self) -> dict[str, float]:
        """Worst, 99th and 50th percentile lateness in milliseconds, and the number of ticks.

        Percentiles are over ticks, not over time: a 500 ms stall is one tick.
        """
        if not self.samples:
            return {"stall_max_ms": 0.0, "stall_p99_ms": 0.0, "stall_p50_ms": 0.0, "ticks": 0}
        ordered = sorted(self.samples)

        def pct(q: float) -> float:
            return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000.0

        return {
            "stall_max_ms": ordered[-1] * 1000.0,
            "stall_p99_ms": pct(0.99),
            "stall_p50_ms": pct(0.50),
            "ticks": len(ordered),
            "stall_max_at_s": self.worst_at,
        }


async def drive(prompts: int, concurrency: int, job: Job) -> int:
    """Run ``job(i)`` for every prompt with at most ``concurrency`` jobs in flight.

    C workers pulling the next index behave exactly like a semaphore around each prompt's job,
    but keep O(C) tasks alive instead of P pending ones: at P=10000 a task per prompt would add
    its own memory to every runner and hide whether the client under test grows with P.
    Returns the bytes written. The first exception stops the run (peers do no checks).
    """
    next_index = 0
    written = 0

    async def worker() -> None:
        nonlocal next_index, written
        while next_index < prompts:
            i = next_index
            next_index += 1
            # Not `written += await job(i)`: that reads `written` before the await and loses
            # every update made by other workers meanwhile.
            got = await job(i)
            written += got

    workers = [asyncio.ensure_future(worker()) for _ in range(min(concurrency, prompts))]
    try:
        await asyncio.gather(*workers)
    finally:
        for w in workers:
            w.cancel()
    return written


def _rss_mb() -> float:
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class IterationCPU:
    """The loop thread's CPU time of each event-loop iteration (``time.thread_time``): what the
    runner's callbacks hold the loop for, without the time the OS gave to other processes.

    Wraps the loop's private ``_run_once`` (benchmark only; the same for every runner).
    """

    def __init__(self) -> None:
        self.cpu = array("d")

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        inner = loop._run_once  # type: ignore[attr-defined]
        clock = time.thread_time
        record = self.cpu.append

        def run_once() -> None:
            c0 = clock()
            inner()
            record(clock() - c0)

        loop._run_once = run_once  # type: ignore[attr-defined]

    def summary(self) -> dict[str, Any]:
        if not self.cpu:
            return {}
        ordered = sorted(self.cpu)
        return {
            "iter_cpu_max_ms": ordered[-1] * 1e3,
            "iter_cpu_p99_ms": ordered[int(0.99 * (len(ordered) - 1))] * 1e3,
            "iters_over_10ms_cpu": sum(1 for c in ordered if c > 0.010),
        }


async def _measure(
    args: Args,
    setup: Callable[[Args], AbstractAsyncContextManager[Job]],
) -> dict[str, Any]:
    ticker = StallTicker()
    iterations = IterationCPU()
    iterations.install(asyncio.get_running_loop())
    rss_start = _rss_mb()
    cpu0 = _cpu_s()
    t0 = time.perf_counter()
    ticker.start()
    async with setup(args) as job:
        written = await drive(args.prompts, args.concurrency, job)
    wall = time.perf_counter() - t0
    await ticker.stop()
    cpu = _cpu_s() - cpu0
    images = args.prompts * args.n
    return {
        "images": images,
        "bytes": written,
        "wall_s": wall,
        "images_per_s": images / wall,
        "mb_per_s": written / wall / 1e6,
        "cpu_s": cpu,
        "rss_at_start_mb": rss_start,
        "rss_peak_mb": _rss_mb(),
        **ticker.summary(),
        **iterations.summary(),
    }


def main(
    runner: str,
    setup: Callable[[Args], AbstractAsyncContextManager[Job]],
    versions: dict[str, str],
    argv: list[str] | None = None,
) -> None:
    """Run the job described by the command line and print one JSON line of results.

    ``setup(args)`` is an async context manager that opens the runner's client(s) and yields the
    per-prompt job; opening and closing are inside the timed region, as in a real program.
    """
    args = parse_args(argv)
    gc.collect()
    if args.profile:
        import cProfile

        prof = cProfile.Profile()
        result = prof.runcall(asyncio.run, _measure(args, setup))
        prof.dump_stats(args.profile)
    else:
        result = asyncio.run(_measure(args, setup))
    result.update(
        runner=runner,
        mode=args.mode,
        prompts=args.prompts,
        concurrency=args.concurrency,
        n=args.n,
        pid=os.getpid(),
        python=platform.python_version(),
        versions=versions,
    )
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
