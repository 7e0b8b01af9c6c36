"""A budget shared through Redis by two shards of one job (``shared_limit``)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import xai_images
from xai_images import GenerateRequest
from xai_images.testing import FakeXAIServer

pytest.importorskip("redis.asyncio")

CENT = 100_000_000


async def test_two_shards_share_one_budget(
    server: FakeXAIServer, redis_server: object, tmp_path: Path
) -> None:
    """Two clients on one key and Redis spend one max_cost between them, never over it."""
    url = redis_server.url  # type: ignore[attr-defined]

    async def shard(number: int) -> xai_images.bulk.BatchRun:
        jobs = [GenerateRequest(f"s{number}-{i}", model="grok-imagine-image") for i in range(10)]
        async with xai_images.AsyncClient(
            api_key=server.api_key, base_url=server.base_url, rate_limit=50, shared_limit=url
        ) as client:
            run = client.bulk(
                jobs, output_dir=tmp_path / f"shard-{number}", max_cost="0.21", budget_name="job"
            )
            await run.collect()
            assert isinstance(run, xai_images.bulk.BatchRun)
            return run

    first, second = await asyncio.gather(shard(1), shard(2))
    assert server.ledger.cost_in_usd_ticks == 10 * 2 * CENT
    assert first.progress.budget_reached or second.progress.budget_reached
    import redis.asyncio as aioredis

    redis = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        keys = await redis.keys("xai-images:spend:*")
        assert len(keys) == 1
        assert server.api_key not in keys[0]
        assert int(await redis.get(keys[0])) == 10 * 2 * CENT
    finally:
        await redis.aclose()


async def test_shared_budget_waits_for_redis_to_come_back(redis_server: object) -> None:
    """Redis down at a reservation: it waits (logging without the password), then goes on."""
    import logging

    from xai_images._wire._shared_budget import SharedLedger, spend_key

    server: Any = redis_server
    warned = asyncio.Event()
    messages: list[str] = []

    class Seen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())
            warned.set()

    handler = Seen(logging.WARNING)
    logger = logging.getLogger("xai_images")
    logger.addHandler(handler)
    ledger = SharedLedger(server.url, spend_key("key", "job"))
    try:
        server.stop()
        reserving = asyncio.create_task(ledger.reserve(5, 10))
        await asyncio.wait_for(warned.wait(), timeout=20)
        assert not reserving.done()
        server.start()
        assert await asyncio.wait_for(reserving, timeout=20)
        assert await ledger.committed() == 5
    finally:
        logger.removeHandler(handler)
        await ledger.aclose()
    assert all(server.password not in message for message in messages)
