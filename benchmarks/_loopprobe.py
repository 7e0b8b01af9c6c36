"""Event-loop probes for ``bench_web.py``'s app process: lag ticker, loop-thread CPU per
iteration, stall sampler, garbage-collector pauses, asyncio debug mode's slow-callback log.

Benchmark-only: ``IterationTimer`` wraps the loop's private ``_run_once``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import threading
import time
from array import array
from collections import Counter, defaultdict
from typing import Any

__all__ = ["GCWatch", "IterationTimer", "LagTicker", "SlowCallbacks", "StallSampler"]

# Frames below these are the event loop's own machinery, not what a stall is about.
_LOOP_FILES = ("asyncio/events.py", "asyncio/base_events.py", "bench_web.py", "_loopprobe.py")


class LagTicker:
    """Sleeps 1 ms in a loop; records how late each wake is and the loop thread's CPU meanwhile."""

    interval = 0.001

    def __init__(self) -> None:
        self.late = array("d")
        self.cpu = array("d")
        self.beat = time.perf_counter()  # when the ticker last went to sleep
        self.stalls: list[tuple[float, float, float]] = []  # (beat, late, cpu) over 10 ms

    def reset(self) -> None:
        self.late = array("d")
        self.cpu = array("d")
        self.stalls = []

    async def run(self) -> None:
        clock, cpu_clock = time.perf_counter, time.thread_time
        while True:
            self.beat = beat = clock()
            cpu0 = cpu_clock()
            await asyncio.sleep(self.interval)
            late = max(0.0, clock() - beat - self.interval)
            cpu = cpu_clock() - cpu0
            self.late.append(late)
            self.cpu.append(cpu)
            if late > 0.010:
                self.stalls.append((beat, late, cpu))

    def summary(self) -> dict[str, Any]:
        if not self.late:
            return {}
        ordered = sorted(self.late)
        worst = max(range(len(self.late)), key=self.late.__getitem__)
        return {
            "lag_max_ms": ordered[-1] * 1e3,
            "lag_p99_ms": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1e3,
            "lag_p50_ms": ordered[len(ordered) // 2] * 1e3,
            "lag_max_cpu_ms": self.cpu[worst] * 1e3,
            "lag_max_on_cpu_ms": max(
                (min(late, cpu) for late, cpu in zip(self.late, self.cpu, strict=True)), default=0
            )
            * 1e3,
            "ticks": len(ordered),
            "stalls_over_10ms": len(self.stalls),
        }


class StallSampler(threading.Thread):
    """While the loop is late by more than 2 ms, records the loop thread's stack every ~1 ms.

    A thread needs the GIL to look: during one long C call (``json.loads``, ``b64decode``) the
    sample is taken right after it returns, in the Python frame that made the call, which still
    names the culprit.
    """

    def __init__(self, ticker: LagTicker, loop_thread: int) -> None:
        super().__init__(daemon=True)
        self.ticker = ticker
        self.loop_thread = loop_thread
        self.samples: dict[float, list[tuple[str, ...]]] = defaultdict(list)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.001):
            beat = self.ticker.beat
            if time.perf_counter() - beat < 0.003:
                continue
            frame = sys._current_frames().get(self.loop_thread)
            if frame is not None:
                self.samples[beat].append(_stack(frame))

    def report(self, stalls: list[tuple[float, float, float]]) -> dict[str, Any]:
        """Culprits of the stalls over 10 ms: stack signatures by samples, and each stall's."""
        by_sig: Counter[str] = Counter()
        by_sdk: Counter[str] = Counter()
        per_stall = []
        for beat, late, cpu in stalls:
            sigs = Counter(_signature(s) for s in self.samples.get(beat, ()))
            by_sig.update(sigs)
            by_sdk.update(_sdk_frame(s) for s in self.samples.get(beat, ()))
            per_stall.append(
                {
                    "late_ms": round(late * 1e3, 1),
                    "cpu_ms": round(cpu * 1e3, 1),
                    "top": sigs.most_common(3),
                }
            )
        per_stall.sort(key=lambda s: -s["late_ms"])
        return {
            "signatures": by_sig.most_common(25),
            "sdk_frames": by_sdk.most_common(15),
            "worst_stalls": per_stall[:15],
        }


def _stack(frame: Any) -> tuple[str, ...]:
    # A bare walk: traceback.extract_stack reads source lines and would hold the GIL itself.
    out = []
    while frame is not None:
        name = frame.f_code.co_filename
        if "xai_images/" in name:
            short = "xai_images/" + name.split("xai_images/")[-1]
        else:
            short = name.split("site-packages/")[-1].split("/lib/python3")[-1]
        out.append(f"{short}:{frame.f_lineno} {frame.f_code.co_name}")
        frame = frame.f_back
    out.reverse()
    return tuple(out)


def _signature(stack: tuple[str, ...]) -> str:
    """The innermost frame, with the innermost SDK frame above it when there is one."""
    frames = [f for f in stack if not any(f.startswith(p) or p in f for p in _LOOP_FILES)]
    if not frames:
        return stack[-1] if stack else "?"
    inner = frames[-1]
    sdk = [f for f in frames if f.startswith("xai_images/")]
    if sdk and sdk[-1] != inner:
        return f"{sdk[-1]} > {inner}"
    return inner


def _sdk_frame(stack: tuple[str, ...]) -> str:
    sdk = [f for f in stack if f.startswith("xai_images/")]
    return sdk[-1] if sdk else "(no SDK frame)"


class IterationTimer:
    """The loop thread's CPU time per event-loop iteration: a stall without the OS's share.

    Wraps the loop's private ``_run_once`` (benchmark only): one iteration runs every callback
    that was ready, so its CPU time is what the app's and the SDK's callbacks cost together.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, gc_watch: GCWatch) -> None:
        self.cpu = array("d")
        self.started = time.perf_counter()
        # Iterations over 10 ms of CPU: (seconds since reset, CPU ms, of which GC ms).
        self.long: list[tuple[float, float, float]] = []
        inner = loop._run_once  # type: ignore[attr-defined]
        cpu_clock = time.thread_time

        def run_once() -> None:
            c0 = cpu_clock()
            gc0 = gc_watch.total
            inner()
            cpu = cpu_clock() - c0
            self.cpu.append(cpu)
            if cpu > 0.010:
                at = time.perf_counter() - self.started
                self.long.append(
                    (round(at, 3), round(cpu * 1e3, 1), round(gc_watch.total - gc0, 1))
                )

        loop._run_once = run_once  # type: ignore[attr-defined]

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.cpu)
        if not ordered:
            return {}
        return {
            "iter_cpu_max_ms": ordered[-1] * 1e3,
            "iter_cpu_p99_ms": ordered[int(0.99 * (len(ordered) - 1))] * 1e3,
            "iters_over_10ms_cpu": sum(1 for c in ordered if c > 0.010),
            "iterations": len(ordered),
            "long_iterations": self.long[:20],
        }


class GCWatch:
    """Durations of garbage-collector passes (a full pass over many objects is a stall too)."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []
        self.total = 0.0  # milliseconds, ever
        self._t0 = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            took = time.perf_counter() - self._t0
            self.pauses.append((info["generation"], took))
            self.total += took * 1e3

    def summary(self) -> dict[str, Any]:
        longest = max((p for _, p in self.pauses), default=0.0)
        return {
            "gc_passes": len(self.pauses),
            "gc_max_ms": longest * 1e3,
            "gc_over_5ms": sum(1 for _, p in self.pauses if p > 0.005),
        }


class SlowCallbacks(logging.Handler):
    """Collects asyncio debug mode's 'Executing <handle> took N seconds' warnings."""

    _PATTERN = re.compile(r"Executing (.*) took ([0-9.]+) seconds", re.S)

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        match = self._PATTERN.search(record.getMessage())
        if match:
            handle = re.sub(r" at 0x[0-9a-f]+|name='Task-\d+'|id=\d+|\d+\.\d+", "", match[1])
            self.seen.append((handle[:300], float(match[2])))

    def summary(self) -> dict[str, Any]:
        counts: Counter[str] = Counter(h for h, _ in self.seen)
        worst: dict[str, float] = {}
        for handle, took in self.seen:
            worst[handle] = max(worst.get(handle, 0.0), took)
        return {
            "slow_callbacks": len(self.seen),
            "slow_callback_kinds": [
                {"handle": h, "count": c, "max_ms": round(worst[h] * 1e3, 1)}
                for h, c in counts.most_common(12)
            ],
        }
