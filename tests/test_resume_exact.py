"""Interrupted bulk runs resume exactly: only requests that went out can be ``unknown``.

Each test interrupts a run at one point (items waiting for the rate limiter or a concurrency
slot, requests in flight, images downloading), resumes with the same manifest and checks the fake
server's ledger: every prompt is billed exactly once, without ``resend_unknown``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import xai_images
from xai_images.bulk import load_manifest
from xai_images.hooks import RateLimited, RetryScheduled
from xai_images.testing import FakeXAIServer, Reply, instant_retries

PROMPTS = [f"prompt {n}" for n in range(8)]
JOBS = [{"prompt": prompt} for prompt in PROMPTS]


@pytest.fixture(autouse=True)
def _instant() -> Iterator[None]:
    with instant_retries():
        yield


def _client(server: FakeXAIServer, **options: Any) -> xai_images.AsyncClient:
    return xai_images.AsyncClient(api_key=server.api_key, base_url=server.base_url, **options)


async def _cancel_run(run: xai_images.bulk.BatchRun, until: Any) -> None:
    """Run ``run`` in a task and cancel that task (a second Ctrl-C) once ``until`` returns."""
    task = asyncio.ensure_future(run.collect())
    await until
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _resume(server: FakeXAIServer, out: Path, **options: Any) -> list[Any]:
    async with _client(server) as client:
        return await client.bulk(JOBS, output_dir=out, **options).collect()


def _partials(out: Path) -> list[Path]:
    return list(out.glob("*.part"))


def _statuses(out: Path) -> dict[str, str]:
    return {r.request["prompt"]: r.status for r in load_manifest(out / "manifest.jsonl").values()}


async def test_items_waiting_for_the_rate_limiter_resume_as_not_run(
    fake_xai_server: FakeXAIServer, tmp_path: Path
) -> None:
    """Leaving the run early while items wait for the limiter records nothing for them."""
    server = fake_xai_server
    client = _client(server, rate_limit=4)
    async with client, client.bulk(JOBS, output_dir=tmp_path, concurrency=8) as run:
        async for _outcome in run:
            break
    first = _statuses(tmp_path)
    assert "unknown" not in first.values()
    assert sum(server.ledger.billed_prompts.values()) == len(first)
    # retry_failed: an item interrupted while saving is fetched again (it is billed).
    outcomes = await _resume(server, tmp_path, retry_failed=True)
    assert all(o.ok for o in outcomes)
    assert server.ledger.billed_prompts == dict.fromkeys(PROMPTS, 1)


async def test_items_waiting_for_a_concurrency_slot_resume_as_not_run(
    fake_xai_server: FakeXAIServer, tmp_path: Path
) -> None:
    """Cancelling mid-request: the 2 requests sent are unknown, the 6 waiting are not recorded."""
    server = fake_xai_server
    server.enqueue(Reply.hang(30), Reply.hang(30))  # billed, then no answer in time
    async with _client(server, max_concurrent_requests=2) as client:
        run = client.bulk(JOBS, output_dir=tmp_path, concurrency=8)
        await _cancel_run(run, server.wait_for(lambda ledger: ledger.images_billed == 2))
    first = _statuses(tmp_path)
    assert sorted(first.values()) == ["unknown", "unknown"]
    outcomes = await _resume(server, tmp_path)
    assert sorted(o.status for o in outcomes) == ["ok"] * 6 + ["unknown"] * 2
    assert [o.skipped for o in outcomes if o.status == "unknown"] == [True, True]
    assert server.ledger.billed_prompts == dict.fromkeys(PROMPTS, 1)


async def test_item_refused_with_429_then_waiting_resumes_as_not_run(
    fake_xai_server: FakeXAIServer, tmp_path: Path
) -> None:
    """An item whose only attempt was answered 429 is not unknown: the server did not run it."""
    server = fake_xai_server
    server.enqueue(Reply.error(429, retry_after="1"))
    async with _client(server) as client:
        task = asyncio.ensure_future(client.bulk(JOBS[:1], output_dir=tmp_path).collect())

        def cancel_on_429(event: object) -> None:
            if isinstance(event, RateLimited):
                task.cancel()  # the item is now between its refused attempt and the next one

        client.add_event_hook(cancel_on_429)
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert _statuses(tmp_path) == {}
    assert server.ledger.images_billed == 0


async def test_interrupted_download_is_fetched_again_not_generated(
    fake_xai_server: FakeXAIServer, tmp_path: Path
) -> None:
    """Cancelled mid-download: billed items are downloaded again on resume, never regenerated."""
    server = fake_xai_server
    server.settings.download_latency = 5
    async with _client(server) as client:
        run = client.bulk(JOBS, output_dir=tmp_path, concurrency=8)
        # Every answer is in hand once the 8 downloads have started.
        await _cancel_run(run, server.wait_for_requests(16))
    assert set(_statuses(tmp_path).values()) == {"failed"}
    server.settings.download_latency = 0
    outcomes = await _resume(server, tmp_path, retry_failed=True)
    assert all(o.ok for o in outcomes)
    assert server.ledger.billed_prompts == dict.fromkeys(PROMPTS, 1)
    assert not _partials(tmp_path)


async def test_mixed_interruption_bills_every_prompt_once(
    fake_xai_server: FakeXAIServer, tmp_path: Path
) -> None:
    """Limiter waits, requests in flight and finished items at once: each prompt billed once."""
    server = fake_xai_server
    server.settings.generation_latency = 0.2
    async with _client(server, rate_limit=20, max_concurrent_requests=3) as client:
        run = client.bulk(JOBS, output_dir=tmp_path, concurrency=8)
        await _cancel_run(run, server.wait_for(lambda ledger: ledger.images_billed >= 2))
    assert len(_statuses(tmp_path)) <= server.ledger.requests_started
    outcomes = await _resume(server, tmp_path, retry_failed=True)
    billed = server.ledger.billed_prompts
    # A request cut mid-way may or may not have been billed (the fake stops work on a
    # disconnect): it stays unknown, never sent twice.
    assert max(billed.values()) == 1
    assert {o.request.prompt for o in outcomes if o.ok} <= set(billed)
    assert {o.status for o in outcomes} <= {"ok", "unknown"}
    assert all(o.skipped for o in outcomes if o.status == "unknown")


async def test_item_between_connection_retries_resumes_as_not_run(tmp_path: Path) -> None:
    """An item whose attempts could not connect is not unknown when cancelled before the next."""
    server = FakeXAIServer()
    await server.start()
    base_url = server.base_url
    await server.stop()  # nothing listens there any more: every attempt fails to connect
    async with xai_images.AsyncClient(api_key="k", base_url=base_url) as client:
        task = asyncio.ensure_future(client.bulk(JOBS[:1], output_dir=tmp_path).collect())

        def cancel_on_retry(event: object) -> None:
            if isinstance(event, RetryScheduled):
                task.cancel()

        client.add_event_hook(cancel_on_retry)
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert _statuses(tmp_path) == {}
