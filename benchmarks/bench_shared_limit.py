"""Benchmark: four worker processes on one API key against a server enforcing 5 requests/s.

Each worker is its own process with one ``AsyncClient(rate_limit=5, max_retries=5)`` and 4 tasks
sending ``generate`` requests in a loop for the run's duration. The fake xAI server (in this
process, on 127.0.0.1) answers 429 to any request that would make a sliding 1 s window hold more
than 5 accepted requests, with no burst allowance, and records when it accepted each request.

Four runs, side by side:

- ``local``: every worker paces itself alone (``RateLimiter``), as without ``shared_limit``;
- ``shared``: the workers share one budget in Redis (``shared_limit=redis://...``);
- ``local, kill``/``shared, kill``: the same, with worker 0 killed (SIGKILL) halfway and started
  again at once.

Reported: 429 answers, accepted requests, the combined accepted rate (accepted requests over the
span from the first to the last accepted one, so process start-up is not counted) as a fraction
of 5/s, and the most accepted requests the server saw in any 1 s window.

Needs ``redis-server`` on the PATH and ``pip install -e '.[shared]'``. Usage::

    python benchmarks/bench_shared_limit.py                 # 4 runs of 20 s
    python benchmarks/bench_shared_limit.py --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis.asyncio

from xai_images.testing import FakeXAIServer

LIMIT = 5
WORKERS = 4
TASKS_PER_WORKER = 4
KEY = "bench-key"


class TimedFake(FakeXAIServer):
    """The fake server, noting the time of every request it accepts (benchmark only)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.accepted: list[float] = []

    def check_rate(self):  # type: ignore[no-untyped-def]
        refused = super().check_rate()
        if refused is None:
            self.accepted.append(time.monotonic())
        return refused


async def _worker(base_url: str, shared: str, until: float) -> None:
    from xai_images import AsyncClient, XAIImagesError

    async with AsyncClient(
        api_key=KEY,
        base_url=base_url,
        rate_limit=LIMIT,
        shared_limit=shared or None,
        max_retries=5,
    ) as client:

        async def loop() -> None:
            while time.time() < until:
                with contextlib.suppress(XAIImagesError):
                    await client.images.generate("bench")

        await asyncio.gather(*(loop() for _ in range(TASKS_PER_WORKER)))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start_redis(binary: str, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if b"PONG" in sock.recv(64):
                    return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("redis-server did not start")


def _max_in_window(times: list[float], window: float = 1.0) -> int:
    # For each accepted request, count those accepted less than `window` seconds after it.
    return max((bisect.bisect_left(times, t + window) - i for i, t in enumerate(times)), default=0)


async def _run(shared: str, duration: float, kill: bool) -> dict[str, float]:
    fake = TimedFake(rps_limit=LIMIT)
    await fake.start()
    try:
        until = time.time() + duration

        async def spawn() -> asyncio.subprocess.Process:
            return await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--worker", fake.base_url, shared, repr(until)
            )

        procs = [await spawn() for _ in range(WORKERS)]
        if kill:
            await asyncio.sleep(duration / 2)
            procs[0].send_signal(signal.SIGKILL)
            await procs[0].wait()
            procs[0] = await spawn()
        await asyncio.gather(*(p.wait() for p in procs))
    finally:
        await fake.stop()
    times = fake.accepted
    span = times[-1] - times[0] if len(times) > 1 else float("nan")
    rate = (len(times) - 1) / span
    return {
        "429": fake.ledger.rate_limited,
        "accepted": len(times),
        "rate": rate,
        "fraction": rate / LIMIT,
        "max_window": _max_in_window(times),
    }


async def _main(duration: float) -> None:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    port = _free_port()
    server = _start_redis(binary, port)
    url = f"redis://127.0.0.1:{port}/0"
    rows = []
    try:
        for name, shared, kill in (
            ("local", "", False),
            ("shared", url, False),
            ("local, kill", "", True),
            ("shared, kill", url, True),
        ):
            # A fresh budget per run: the record of the previous run must not carry over.
            flusher = redis.asyncio.Redis.from_url(url)
            await flusher.flushall()
            await flusher.aclose()
            result = await _run(shared, duration, kill)
            rows.append((name, result))
            print(f"  {name}: done", file=sys.stderr)
    finally:
        server.kill()
        server.wait()
    print(
        f"\n{WORKERS} processes x {TASKS_PER_WORKER} tasks, one key, server limit {LIMIT}/s "
        f"(no burst), {duration:g} s per run, {os.cpu_count()} CPUs\n"
    )
    print("| run | 429 answers | accepted | combined rate | of 5/s | max in 1 s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, r in rows:
        print(
            f"| {name} | {r['429']:.0f} | {r['accepted']:.0f} | {r['rate']:.2f}/s | "
            f"{r['fraction']:.1%} | {r['max_window']:.0f} |"
        )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        base_url, shared, until = sys.argv[2], sys.argv[3], float(sys.argv[4])
        asyncio.run(_worker(base_url, shared, until))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per run (20)")
    args = parser.parse_args()
    asyncio.run(_main(args.duration))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
