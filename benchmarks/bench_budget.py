"""Benchmark: a job of 1,000 items under a budget that stops it half way, on both paths.

Against the fake xAI server (127.0.0.1) with its default price table: every item asks for one
``grok-imagine-image`` at $0.02, and ``max_cost`` is half the job's price plus a fraction of
an image (so "within one image of the budget" is a real check, not a round number).

- ``realtime``: ``client.bulk(..., max_cost=...)`` with the client's ``rate_limit`` equal to the
  server's limit (``--rps``, default 5 requests/s, the live API's) and 16 requests in flight;
- ``batch-api``: the same job through the Batch API (``via="batch-api"``).

Reported per path: items done, the budget, what the server billed, the gap between them (must
be >= 0 and below one image), 429 answers, elapsed seconds; then a rerun with twice the budget
finishes the job and bills only the rest.

Usage::

    python benchmarks/bench_budget.py                # 1,000 items, 5 requests/s (~100 s)
    python benchmarks/bench_budget.py --rps 50       # quicker
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from decimal import Decimal

import xai_images
from xai_images import GenerateRequest
from xai_images.testing import FakeXAIServer

PRICE = Decimal("0.02")
TICKS = 10**10


async def one(via: str, items: int, rps: float) -> None:
    budget = PRICE * items / 2 + PRICE * Decimal("0.6")
    jobs = [GenerateRequest(f"item {i}", model="grok-imagine-image") for i in range(items)]
    limit = None if via == "batch-api" else rps
    async with (
        FakeXAIServer(rps_limit=limit, batch_processing_seconds=0.0, image_bytes=256) as server,
        xai_images.AsyncClient(
            api_key=server.api_key, base_url=server.base_url, rate_limit=rps, max_retries=5
        ) as client,
    ):
        out = tempfile.mkdtemp(prefix="bench-budget-")
        via_arg = via if via == "realtime" else xai_images.bulk.BatchAPI(poll_interval=0.2)
        started = time.perf_counter()
        run = client.bulk(jobs, output_dir=out, max_cost=budget, via=via_arg)
        outcomes = await run.collect()
        elapsed = time.perf_counter() - started
        billed = Decimal(server.ledger.cost_in_usd_ticks) / TICKS
        gap = budget - billed
        ok = sum(o.ok for o in outcomes)
        print(
            f"{via:<10} items done {ok:>4}/{items}  budget ${budget}  billed ${billed}  "
            f"gap ${gap} ({'within one image' if 0 <= gap < PRICE else 'OUT OF BOUNDS'})  "
            f"budget_reached={run.progress.budget_reached}  429s {server.ledger.rate_limited}  "
            f"{elapsed:.1f} s"
        )
        before = server.ledger.images_billed
        again = client.bulk(jobs, output_dir=out, max_cost=budget * 2, via=via_arg)
        rest = await again.collect()
        print(
            f"{'':<10} rerun with ${budget * 2}: {sum(not o.skipped for o in rest)} more item(s), "
            f"billed {server.ledger.images_billed - before} more image(s), total "
            f"{server.ledger.images_billed} for {items} items"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--rps", type=float, default=5.0)
    args = parser.parse_args()
    for via in ("realtime", "batch-api"):
        await one(via, args.items, args.rps)


if __name__ == "__main__":
    asyncio.run(main())
