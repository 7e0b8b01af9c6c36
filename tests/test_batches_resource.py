"""client.batches and client.files against the fake Batch and Files APIs."""

from __future__ import annotations

import datetime
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from xai_images import (
    AsyncClient,
    EditRequest,
    GenerateRequest,
    NotFoundError,
    ValidationError,
)
from xai_images._api._batch_models import parse_batch, parse_result
from xai_images.bulk import BatchLimits, BatchResult
from xai_images.testing import FakeClock, FakeXAIServer, Reply
from xai_images.testing._imagegen import image_data

pytestmark = pytest.mark.usefixtures("xai_instant_retries")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake_xai_server_options(clock: FakeClock) -> dict[str, Any]:
    """Small images, the test's clock, and no limit on batch creation."""
    return {"image_bytes": 512, "clock": clock, "batch_create_limit": None}


@pytest.fixture
async def client(server: FakeXAIServer) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(api_key=server.api_key, base_url=server.base_url) as c:
        c.batches.limits = BatchLimits(creates_per_second=1000)
        yield c


def prompts(count: int, prefix: str = "fox") -> list[GenerateRequest]:
    return [GenerateRequest(f"a {prefix} number {i}", id=f"{prefix}-{i}") for i in range(count)]


async def all_results(client: AsyncClient, batch_id: str, **kwargs: Any) -> list[BatchResult]:
    results: list[BatchResult] = []
    token = None
    while True:
        page = await client.batches.results(batch_id, page_token=token, **kwargs)
        results.extend(page.results)
        token = page.next_page_token
        if token is None:
            return results


async def test_create_and_get_return_typed_batches(client: AsyncClient) -> None:
    """create names the batch; get reports its counters and times."""
    batch = await client.batches.create("run-1")
    assert batch.batch_id.startswith("batch_")
    assert batch.name == "run-1"
    again = await client.batches.get(batch.batch_id)
    assert again.state.num_requests == 0
    assert again.create_time is not None
    assert again.create_time.tzinfo is not None
    assert again.expire_time is not None
    assert again.expire_time > again.create_time
    assert not again.done


async def test_add_sends_each_id_once_and_get_counts_them(
    client: AsyncClient, server: FakeXAIServer
) -> None:
    """Added requests appear in the counters, each id sent exactly once."""
    batch = await client.batches.create("run-1")
    added = await client.batches.add(batch.batch_id, prompts(5))
    assert added == [f"fox-{i}" for i in range(5)]
    state = (await client.batches.get(batch.batch_id)).state
    assert state.num_requests == 5
    assert set(server.ledger.batch_request_adds.values()) == {1}


async def test_add_splits_calls_under_the_per_call_size(
    client: AsyncClient, server: FakeXAIServer
) -> None:
    """Requests are split into as many calls as the per-call byte limit requires."""
    client.batches.limits = BatchLimits(max_call_bytes=400, creates_per_second=1000)
    batch = await client.batches.create("run-1")
    await client.batches.add(batch.batch_id, prompts(6))
    assert server.ledger.batch_adds > 1
    assert server.ledger.batch_requests_added == 6


async def test_add_splits_calls_by_count(client: AsyncClient, server: FakeXAIServer) -> None:
    """No call carries more than max_requests_per_call requests."""
    client.batches.limits = BatchLimits(max_requests_per_call=2, creates_per_second=1000)
    batch = await client.batches.create("run-1")
    await client.batches.add(batch.batch_id, prompts(5))
    assert server.ledger.batch_adds == 3


async def test_oversized_request_is_refused_locally_naming_it(
    client: AsyncClient, server: FakeXAIServer
) -> None:
    """A request over the per-request limit raises before any call, naming its id."""
    client.batches.limits = BatchLimits(max_request_bytes=200, creates_per_second=1000)
    batch = await client.batches.create("run-1")
    requests = [GenerateRequest("small", id="ok-1"), GenerateRequest("x" * 500, id="huge-1")]
    with pytest.raises(ValidationError, match="huge-1"):
        await client.batches.add(batch.batch_id, requests)
    assert server.ledger.batch_adds == 0


@pytest.mark.realtime
async def test_add_pacer_keeps_under_the_rolling_limit(
    server: FakeXAIServer, client: AsyncClient
) -> None:
    """With the pacer's window wider than the server's, several calls never get a 429."""
    server.settings.batch_add_limit = 2
    server.settings.batch_add_window = 0.3
    server.settings.clock = time.time
    # 0.2 s of margin absorbs scheduling jitter between the client's clock and the server's.
    client.batches.limits = BatchLimits(
        add_calls=2, add_window=0.5, max_requests_per_call=1, creates_per_second=1000
    )
    batch = await client.batches.create("run-1")
    await client.batches.add(batch.batch_id, prompts(5))
    assert server.ledger.rate_limited == 0
    assert server.ledger.batch_adds == 5


async def test_lost_add_is_reconciled_without_resending(
    client: AsyncClient, server: FakeXAIServer
) -> None:
    """An add whose answer is lost is checked by listing; no id is sent twice."""
    batch = await client.batches.create("run-1")
    server.enqueue_batch(Reply.drop(), route="add")
    await client.batches.add(batch.batch_id, prompts(4))
    assert server.ledger.batch_adds == 1
    assert set(server.ledger.batch_request_adds.values()) == {1}
    assert await client.batches.request_ids(batch.batch_id) == {f"fox-{i}" for i in range(4)}


async def test_add_answered_5xx_is_checked_before_sending_again(
    client: AsyncClient, server: FakeXAIServer
) -> None:
    """A 5xx on an add is settled by listing the batch: the missing ids go once more."""
    batch = await client.batches.create("run-1")
    server.enqueue_batch(Reply.error(502), route="add")
    await client.batches.add(batch.batch_id, prompts(3))
    assert set(server.ledger.batch_request_adds.values()) == {1}
    assert (await client.batches.get(batch.batch_id)).state.num_requests == 3


async def test_create_answered_5xx_makes_one_batch(
    client: AsyncClient, server: FakeXAIServer
) -> None:
    """A 5xx on a create is checked by name before creating again."""
    server.enqueue_batch(Reply.error(503), route="create")
    batch = await client.batches.create("run-5xx")
    assert batch.name == "run-5xx"
    assert server.ledger.batches_created == 1


async def test_lost_create_finds_the_batch_by_name(
    client: AsyncClient, server: FakeXAIServer
) -> None:
    """A create whose answer is lost returns the batch it made; only one exists."""
    server.enqueue_batch(Reply.drop(), route="create")
    batch = await client.batches.create("run-lost")
    assert batch.name == "run-lost"
    assert server.ledger.batches_created == 1


async def test_list_pages_through_every_batch(client: AsyncClient) -> None:
    """list() follows page tokens to the end."""
    for i in range(5):
        await client.batches.create(f"run-{i}")
    names = [b.name async for b in client.batches.list(page_size=2)]
    assert names == [f"run-{i}" for i in range(5)]


@pytest.mark.parametrize("end", ["null", "empty", "absent"])
async def test_list_requests_ends_on_every_end_token(
    client: AsyncClient, server: FakeXAIServer, end: str
) -> None:
    """A null, empty or absent last token ends the listing; states are reported."""
    server.settings.batch_end_token = end
    batch = await client.batches.create("run-1")
    await client.batches.add(batch.batch_id, prompts(5))
    states = [s async for s in client.batches.list_requests(batch.batch_id, page_size=2)]
    assert [s.batch_request_id for s in states] == [f"fox-{i}" for i in range(5)]
    assert {s.state for s in states} <= {"pending", "succeeded"}


async def test_results_page_through_and_hold_saveable_images(
    client: AsyncClient, tmp_path: Path
) -> None:
    """Results come back in pages; each success saves like a real-time response."""
    batch = await client.batches.create("run-1")
    await client.batches.add(batch.batch_id, prompts(5))
    results = await all_results(client, batch.batch_id, page_size=2)
    assert sorted(r.batch_request_id for r in results) == [f"fox-{i}" for i in range(5)]
    assert all(r.ok and r.response is not None for r in results)
    response = results[0].response
    assert response is not None
    assert response.usage is not None
    saved = await response.images[0].save(tmp_path / "first")
    assert saved.path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def test_b64_results_carry_the_bytes(client: AsyncClient) -> None:
    """A b64_json request's result holds the decoded image."""
    batch = await client.batches.create("run-1")
    await client.batches.add(batch.batch_id, [GenerateRequest("x", response_format="b64_json")])
    (result,) = await all_results(client, batch.batch_id)
    assert result.response is not None
    content = result.response.images[0].content
    assert content is not None
    assert content.startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("shape", "code"), [("status", 13), ("string", None), ("vercel", 13), ("top_level", None)]
)
async def test_failed_results_carry_code_and_message_in_every_shape(
    client: AsyncClient, server: FakeXAIServer, shape: str, code: int | None
) -> None:
    """Each documented error shape reads as failed with the server's message (and code)."""
    server.settings.batch_error_shape = shape
    server.settings.batch_failure_rate = 1.0
    batch = await client.batches.create("run-1")
    await client.batches.add(batch.batch_id, prompts(1))
    (result,) = await all_results(client, batch.batch_id)
    assert result.status == "failed"
    assert result.error_code == code
    assert result.error_message == "Image generation failed: internal error."


async def test_moderated_result_is_blocked(client: AsyncClient, server: FakeXAIServer) -> None:
    """A result whose images have neither url nor b64_json is blocked."""
    server.settings.batch_moderation_rate = 1.0
    batch = await client.batches.create("run-1")
    await client.batches.add(batch.batch_id, prompts(1))
    (result,) = await all_results(client, batch.batch_id)
    assert result.status == "blocked"


async def test_edit_results_under_image_edit_are_read(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """An edit (local input sent inline) answered under image_edit parses as a success."""
    server.settings.batch_edit_result_key = "image_edit"
    source = tmp_path / "in.png"
    source.write_bytes(image_data("png", 512, 1))
    batch = await client.batches.create("run-1")
    await client.batches.add(batch.batch_id, [EditRequest("paint it", image=source, id="e1")])
    (result,) = await all_results(client, batch.batch_id)
    assert result.ok


async def test_bare_date_timestamps_are_parsed(client: AsyncClient, server: FakeXAIServer) -> None:
    """Batch times sent as bare YYYY-MM-DD dates parse as UTC midnight."""
    server.settings.batch_time_format = "date"
    batch = await client.batches.create("run-1")
    assert batch.create_time is not None
    assert batch.create_time.time() == datetime.time(0, 0)


async def test_cancel_keeps_finished_results_and_cancels_pending(
    client: AsyncClient, server: FakeXAIServer
) -> None:
    """cancel() sets cancel_time; pending requests count as cancelled."""
    server.settings.batch_processing_seconds = 3600
    batch = await client.batches.create("run-1")
    await client.batches.add(batch.batch_id, prompts(3))
    cancelled = await client.batches.cancel(batch.batch_id)
    assert cancelled.cancel_time is not None
    assert cancelled.done
    assert cancelled.state.num_cancelled == 3


async def test_get_unknown_batch_raises_not_found(client: AsyncClient) -> None:
    """An unknown batch id is a NotFoundError."""
    with pytest.raises(NotFoundError):
        await client.batches.get("batch_nope")


async def test_files_upload_get_delete(client: AsyncClient, server: FakeXAIServer) -> None:
    """Upload (expires_after before file), read back, delete; then 404."""
    stored = await client.files.upload(b'{"a": 1}\n', filename="x.jsonl", expires_after=3600)
    assert stored.id.startswith("file_")
    assert stored.bytes == 9
    assert stored.expires_at is not None
    assert (await client.files.get(stored.id)).filename == "x.jsonl"
    assert await client.files.delete(stored.id)
    with pytest.raises(NotFoundError):
        await client.files.get(stored.id)


async def test_upload_rejects_expires_after_out_of_range(client: AsyncClient) -> None:
    """expires_after outside 3600..2592000 is refused locally."""
    with pytest.raises(ValidationError, match="expires_after"):
        await client.files.upload(b"x", expires_after=10)


async def test_file_batch_cancelled_by_xai_reports_the_message(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """A JSONL batch with an unsupported model is cancelled by xAI with its message."""
    server.settings.batch_unsupported_models = ("grok-old",)
    line = (
        '{"custom_id": "a", "method": "POST", "url": "/v1/images/generations", '
        '"body": {"prompt": "x", "model": "grok-old"}}\n'
    )
    path = tmp_path / "jobs.jsonl"
    path.write_text(line)
    stored = await client.files.upload(path)
    batch = await client.batches.create("run-file", input_file_id=stored.id)
    assert batch.input_file_id == stored.id
    batch = await client.batches.get(batch.batch_id)
    assert batch.cancelled
    assert batch.done
    assert batch.cancel_by_xai_message is not None
    assert "not supported for batch processing" in batch.cancel_by_xai_message


def test_batch_reads_expires_at_as_expire_time() -> None:
    """The docs' expires_at spelling fills expire_time; unknown keys are ignored."""
    batch = parse_batch(
        {"batch_id": "batch_1", "expires_at": "2026-01-02T00:00:00Z", "new_key": 1, "state": {}}
    )
    assert batch.expire_time == datetime.datetime(2026, 1, 2, tzinfo=datetime.timezone.utc)


def test_result_with_any_single_response_key_is_a_success() -> None:
    """The single value under response is read whatever its key."""
    entry = {
        "batch_request_id": "a",
        "batch_result": {"response": {"image_response": {"data": [{"url": "https://x/y.png"}]}}},
    }
    result = parse_result(entry)
    assert result.ok
    assert result.response is not None
    assert result.response.images[0].url == "https://x/y.png"


def test_result_with_error_message_only_is_failed() -> None:
    """A top-level error_message alone marks a failure with that message."""
    result = parse_result({"batch_request_id": "a", "error_message": "Invalid request."})
    assert result.status == "failed"
    assert result.error_message == "Invalid request."
