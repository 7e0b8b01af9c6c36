"""Micro-benchmark: loop-thread CPU of the iteration that starts N requests at once.

When N handlers reach ``client.images.generate`` together, every request start (and, on a cold
pool, every connection opening) runs in one event-loop iteration. This measures that iteration's
CPU time (``time.thread_time``, so the OS's share on a busy machine is left out) for the SDK and
for a bare aiohttp POST + ``json.loads``, on a cold and then a warm connection pool, with the
garbage collector off so that a collection does not land in the measured iteration.
See WEB-DIAGNOSIS.md, item 2.

Usage::

    python benchmarks/web_starts.py --starts 100,128 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _loopprobe import GCWatch, IterationTimer  # noqa: E402
from bench_save import FakeServer, Scenario  # noqa: E402

import xai_images  # noqa: E402

MODEL = "grok-imagine-image"


async def measure(base_url: str, n: int) -> dict[str, float]:
    """Worst iteration CPU (ms) for: sdk cold, sdk warm, bare cold, bare warm."""
    loop = asyncio.get_running_loop()
    timer = IterationTimer(loop, GCWatch())
    out: dict[str, float] = {}

    async def wave(label: str, calls: list[Any]) -> None:
        timer.cpu = type(timer.cpu)("d")
        await asyncio.gather(*calls)
        out[label] = max(timer.cpu) * 1e3

    async with xai_images.AsyncClient("xai-bench-key", base_url=base_url) as client:
        for label in ("sdk cold", "sdk warm"):
            await wave(label, [client.images.generate(f"p{i}", n=1) for i in range(n)])
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def bare(i: int) -> Any:
            body = {"model": MODEL, "prompt": f"p{i}", "n": 1, "response_format": "url"}
            headers = {"Authorization": "Bearer xai-bench-key"}
            async with session.post(
                base_url + "/images/generations", json=body, headers=headers
            ) as resp:
                return json.loads(await resp.read())

        for label in ("bare cold", "bare warm"):
            await wave(label, [bare(i) for i in range(n)])
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--starts", default="100,128", help="requests started at once")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    gc.disable()
    # Latency long enough that every request of a wave has started before any answer.
    with FakeServer(Scenario("starts", 0, 0, 1, 4096, generation_latency=0.3), "png") as server:
        print("| N | run | sdk cold | sdk warm | bare cold | bare warm |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: |")
        for n in (int(x) for x in args.starts.split(",")):
            for k in range(args.repeat):
                r = asyncio.run(measure(server.base_url, n))
                cells = " | ".join(
                    f"{r[c]:.1f}" for c in ("sdk cold", "sdk warm", "bare cold", "bare warm")
                )
                print(f"| {n} | {k + 1} | {cells} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
