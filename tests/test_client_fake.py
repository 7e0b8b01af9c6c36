"""The client against the fake server over real sockets: billing, timeouts, deferred, limits."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from xai_images import (
    APIConnectionError,
    APIResponseError,
    APITimeoutError,
    AsyncClient,
    DeferredError,
    DeferredRequest,
    ImageBlockedError,
    OutcomeUnknownError,
    RetryPolicy,
    Timeout,
    ValidationError,
)
from xai_images.testing import FakeXAIServer, Reply

KEY = "xai-SECRET-fake-d4e5f6"


pytestmark = pytest.mark.usefixtures("xai_instant_retries")


@pytest.fixture
def fake_xai_server_options() -> dict[str, Any]:
    """The fake requires this module's key (the client uses it too)."""
    return {"api_key": KEY}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_generate_returns_urls_usage_and_request_id(
    server: FakeXAIServer, client: AsyncClient
) -> None:
    """A generation returns n URL images, the cost and the request id."""
    resp = await client.images.generate("a cat in a tree", n=3)
    assert len(resp.data) == 3
    assert all(image.url and image.source == "url" for image in resp.data)
    assert resp.usage is not None
    assert resp.usage.cost_in_usd_ticks == server.ledger.cost_in_usd_ticks
    assert resp.request_id
    assert server.ledger.images_billed == 3


async def test_b64_answer_with_prefix_is_decoded(
    server: FakeXAIServer, client: AsyncClient
) -> None:
    """b64_json images (with the data: prefix) arrive as bytes of the served format."""
    server.settings.b64_prefix = True
    server.settings.image_format = "webp"
    resp = await client.images.generate("x", n=2, response_format="b64_json")
    for image in resp.data:
        assert image.content is not None
        assert image.content[8:12] == b"WEBP"
        assert len(image.content) == server.settings.image_bytes


async def test_large_b64_answer_is_decoded_exactly(
    server: FakeXAIServer, client: AsyncClient
) -> None:
    """A multi-megabyte b64 answer decodes to images of exactly the served size."""
    server.settings.image_bytes = 3 * 1024 * 1024
    resp = await client.images.generate("big", n=2, response_format="b64_json")
    assert [len(image.content or b"") for image in resp.data] == [3 * 1024 * 1024] * 2


async def test_saving_a_response_writes_its_images(client: AsyncClient, tmp_path: Path) -> None:
    """resp.save() writes every image through the client's transfers."""
    resp = await client.images.generate("x", n=2)
    saved = await resp.save(tmp_path)
    assert len(saved) == 2
    assert all(item.path.exists() and item.path.parent == tmp_path for item in saved)


async def test_dropped_answer_is_outcome_unknown_and_billed_once(
    server: FakeXAIServer, client: AsyncClient
) -> None:
    """A connection dropped after sending raises OutcomeUnknownError; no retry, billed once."""
    server.enqueue(Reply.drop())
    with pytest.raises(OutcomeUnknownError, match="billed") as info:
        await client.images.generate("x")
    assert info.value.reason == "disconnected"
    assert "retry_unknown_outcome" in str(info.value)
    assert server.ledger.images_billed == 1
    assert len(server.ledger.api_requests()) == 1


async def test_timeout_after_sending_is_outcome_unknown_and_billed_once(
    server: FakeXAIServer, client: AsyncClient
) -> None:
    """A request timeout while the server generates raises OutcomeUnknownError(reason=timeout)."""
    server.enqueue(Reply.hang(3))
    with pytest.raises(OutcomeUnknownError) as info:
        await client.images.generate("x", timeout=0.2)
    assert info.value.reason == "timeout"
    assert server.ledger.images_billed == 1
    assert server.ledger.billed_prompts["x"] == 1


async def test_client_timeout_applies_to_every_call(server: FakeXAIServer) -> None:
    """The client-wide request timeout is used when a call sets none."""
    server.enqueue(Reply.hang(3))
    async with AsyncClient(KEY, base_url=server.base_url, timeout=Timeout(request=0.2)) as c:
        with pytest.raises(OutcomeUnknownError):
            await c.images.generate("x")


async def test_opting_in_retries_unknown_outcomes(server: FakeXAIServer) -> None:
    """With retry_unknown_outcome=True a dropped answer is retried (and billed twice)."""
    server.enqueue(Reply.drop())
    policy = RetryPolicy(retry_unknown_outcome=True)
    async with AsyncClient(KEY, base_url=server.base_url, retry=policy) as c:
        resp = await c.images.generate("x")
    assert resp.data[0].url
    assert server.ledger.images_billed == 2


async def test_5xx_is_retried_without_paying_twice(
    server: FakeXAIServer, client: AsyncClient
) -> None:
    """500 and 429 answers are retried; only the final success is billed."""
    server.enqueue(Reply.error(500), Reply.error(429, retry_after="1"))
    resp = await client.images.generate("x")
    assert resp.data
    assert server.ledger.images_billed == 1
    assert len(server.ledger.api_requests()) == 3


async def test_refused_connection_is_retried_then_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A closed port is retried (nothing was sent), then APIConnectionError."""
    port = free_port()
    async with AsyncClient(KEY, base_url=f"http://127.0.0.1:{port}/v1") as c:
        with (
            caplog.at_level("DEBUG", logger="xai_images"),
            pytest.raises(APIConnectionError) as info,
        ):
            await c.images.generate("x")
    assert not isinstance(info.value, OutcomeUnknownError)
    assert isinstance(info.value.__cause__, aiohttp.ClientConnectorError)
    retries = [r for r in caplog.records if r.getMessage().startswith("retrying")]
    assert len(retries) == 2


async def test_connect_timeout_is_retried_then_raises_api_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Connecting that times out is safe to retry; the final error is APITimeoutError."""
    attempts = 0

    async def never_connects(*_: Any, **__: Any) -> Any:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(30)

    monkeypatch.setattr(aiohttp.TCPConnector, "_create_connection", never_connects)
    async with AsyncClient(KEY, base_url="http://127.0.0.1:9/v1", timeout=0.05) as c:
        with pytest.raises(APITimeoutError, match="nothing was sent"):
            await c.images.generate("x")
    assert attempts == 3


async def test_validation_failures_send_nothing(server: FakeXAIServer, client: AsyncClient) -> None:
    """Invalid generate and edit arguments reach no server: the ledger stays empty."""
    with pytest.raises(ValidationError):
        await client.images.generate("")
    with pytest.raises(ValidationError):
        await client.images.generate("x", quality="ultra")
    with pytest.raises(ValidationError) as info:
        await client.images.edit("x", images=["https://e.test/a.png", "/no/such/file.png"])
    assert info.value.field == "images[1]"
    assert "/no/such/file.png" in str(info.value)
    assert server.ledger.requests == []


async def test_edit_input_over_10_mib_is_rejected_before_sending(
    server: FakeXAIServer, client: AsyncClient, tmp_path: Path
) -> None:
    """A local image over 10 MiB is a ValidationError naming the limit; nothing is sent."""
    path = tmp_path / "big.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * (10 * 1024 * 1024))
    with pytest.raises(ValidationError, match="10 MiB"):
        await client.images.edit("x", image=path)
    assert server.ledger.requests == []


async def test_edit_input_of_another_format_is_rejected(
    server: FakeXAIServer, client: AsyncClient
) -> None:
    """Bytes that are not JPEG, PNG or WebP are rejected before sending."""
    with pytest.raises(ValidationError, match="JPEG, PNG or WebP"):
        await client.images.edit("x", image=b"GIF89a" + b"\x00" * 20)
    assert server.ledger.requests == []


async def test_edit_of_a_local_file_is_accepted_by_the_server(
    server: FakeXAIServer, client: AsyncClient, tmp_path: Path
) -> None:
    """An edit with a local file and one combining images both succeed and are billed."""
    png = await (await client.images.generate("src", response_format="b64_json")).data[0].read()
    path = tmp_path / "in.png"
    path.write_bytes(png)
    one = await client.images.edit("add a rainbow", image=path)
    two = await client.images.edit("merge <IMAGE_0> and <IMAGE_1>", images=[path, png])
    assert one.data
    assert two.data
    sent = server.ledger.api_requests()[-1].body
    assert len(sent["images"]) == 2
    assert sent["images"][0]["url"].startswith("data:image/png;base64,")


async def test_deferred_generation_can_be_awaited(
    server: FakeXAIServer, client: AsyncClient
) -> None:
    """generate_deferred returns a DeferredRequest; polling gives pending, then the images."""
    server.settings.deferred_pending_polls = 2
    deferred = await client.images.generate_deferred("x", n=2)
    assert isinstance(deferred, DeferredRequest)
    assert (await deferred.status()).status == "pending"
    resp = await deferred.wait(poll_interval=0.01)
    assert len(resp.data) == 2
    assert resp.data[0].url
    assert resp.usage is not None


async def test_deferred_failure_raises_deferred_error(
    server: FakeXAIServer, client: AsyncClient
) -> None:
    """A deferred request that ends failed raises DeferredError(status="failed")."""
    server.settings.deferred_fail = True
    deferred = await client.images.generate_deferred("x")
    with pytest.raises(DeferredError) as info:
        await client.images.wait_deferred(deferred.request_id, poll_interval=0.01)
    assert info.value.status == "failed"
    assert info.value.request_id == deferred.request_id


async def test_unknown_deferred_id_is_expired(client: AsyncClient) -> None:
    """A 404 poll reads as expired; waiting on it raises DeferredError(status="expired")."""
    state = await client.images.get_deferred("no-such-id")
    assert state.status == "expired"
    with pytest.raises(DeferredError) as info:
        await client.images.wait_deferred("no-such-id")
    assert info.value.status == "expired"


async def test_deferred_deadline_raises(server: FakeXAIServer, client: AsyncClient) -> None:
    """Still pending at the deadline raises DeferredError(status="pending")."""
    server.settings.deferred_pending_polls = 10_000
    deferred = await client.images.generate_deferred("x")
    with pytest.raises(DeferredError, match="still pending") as info:
        await deferred.wait(timeout=0.05, poll_interval=0.01)
    assert info.value.status == "pending"


async def test_moderation_empty_data_is_reported(
    server: FakeXAIServer, client: AsyncClient
) -> None:
    """A 200 with empty data counts the requested images as blocked."""
    server.settings.moderation = "empty"
    resp = await client.images.generate("x", n=3)
    assert resp.data == ()
    assert resp.blocked_count == 3


async def test_moderation_blocked_images_raise_on_save(
    server: FakeXAIServer, client: AsyncClient, tmp_path: Path
) -> None:
    """Images without url or b64 are blocked; saving one raises ImageBlockedError."""
    server.settings.moderation = "blocked"
    resp = await client.images.generate("x", n=2)
    assert len(resp.blocked) == 2
    with pytest.raises(ImageBlockedError):
        await resp.data[0].save(tmp_path / "a.png")
    assert await resp.save(tmp_path) == []


@pytest.mark.realtime
async def test_rate_limit_keeps_under_the_server_limit(server: FakeXAIServer) -> None:
    """With rate_limit matching the server's per-second limit, a burst gets no 429."""
    server.settings.rps_limit = 3
    async with AsyncClient(KEY, base_url=server.base_url, rate_limit=3, max_retries=0) as c:
        await asyncio.gather(*(c.images.generate(f"p{i}") for i in range(5)))
    assert server.ledger.rate_limited == 0
    assert server.ledger.images_billed == 5


async def test_max_concurrent_requests_caps_requests_in_flight(server: FakeXAIServer) -> None:
    """No more than max_concurrent_requests API requests are in flight at once."""
    server.settings.generation_latency = 0.05
    in_flight = SimpleNamespace(now=0, peak=0)

    async def start(*_: Any) -> None:
        in_flight.now += 1
        in_flight.peak = max(in_flight.peak, in_flight.now)

    async def end(*_: Any) -> None:
        in_flight.now -= 1

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(start)
    trace.on_request_end.append(end)
    async with (
        aiohttp.ClientSession(trace_configs=[trace]) as session,
        AsyncClient(KEY, base_url=server.base_url, session=session, max_concurrent_requests=2) as c,
    ):
        await asyncio.gather(*(c.images.generate(f"p{i}") for i in range(6)))
    assert in_flight.peak == 2


async def test_no_authorization_header_reaches_the_image_host(
    server: FakeXAIServer, client: AsyncClient, tmp_path: Path
) -> None:
    """Downloads through the client's session carry no API key."""
    resp = await client.images.generate("x", n=2)
    await resp.save(tmp_path)
    assert server.ledger.images_downloaded == 2
    assert server.ledger.downloads_with_auth == 0


async def test_only_set_fields_reach_the_server(server: FakeXAIServer, client: AsyncClient) -> None:
    """The fake records exactly the fields the caller set."""
    await client.images.generate("x", resolution="1k", user="u")
    (request,) = server.ledger.api_requests()
    assert request.body == {"prompt": "x", "resolution": "1k", "user": "u"}
    assert request.header("Authorization") == f"Bearer {KEY}"


def _failing_middleware(method: str, failures: int) -> Any:
    """A client middleware that times out the first `failures` requests of `method`."""
    left = SimpleNamespace(count=failures)

    async def middleware(request: aiohttp.ClientRequest, handler: Any) -> aiohttp.ClientResponse:
        if request.method == method and left.count > 0:
            left.count -= 1
            raise asyncio.TimeoutError
        response: aiohttp.ClientResponse = await handler(request)
        return response

    return middleware


async def test_deferred_polls_are_retried_after_a_lost_answer(server: FakeXAIServer) -> None:
    """A poll whose answer was lost is retried: GETs cost nothing."""
    server.settings.deferred_pending_polls = 0
    middleware = _failing_middleware("GET", failures=1)
    async with (
        aiohttp.ClientSession(middlewares=(middleware,)) as session,
        AsyncClient(KEY, base_url=server.base_url, session=session) as c,
    ):
        deferred = await c.images.generate_deferred("x")
        state = await deferred.status()
    assert state.status == "done"


async def test_a_callers_session_treats_post_connect_failures_as_unknown(
    server: FakeXAIServer,
) -> None:
    """Without the client's own send tracking, a failure after connecting is not retried."""
    middleware = _failing_middleware("POST", failures=1)
    async with (
        aiohttp.ClientSession(middlewares=(middleware,)) as session,
        AsyncClient(KEY, base_url=server.base_url, session=session) as c,
    ):
        with pytest.raises(OutcomeUnknownError):
            await c.images.generate("x")
    assert server.ledger.requests == []


@pytest.fixture
async def poll_answers() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A tiny API on a real socket whose deferred polls answer the queued bodies (200) in order,
    repeating the last one; yields (base_url, bodies)."""
    from aiohttp import web

    bodies: list[dict[str, Any]] = []

    async def poll(_request: web.Request) -> web.Response:
        body = bodies.pop(0) if len(bodies) > 1 else bodies[0]
        return web.json_response(body)

    app = web.Application()
    app.router.add_get("/v1/images/{request_id}", poll)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/v1", bodies
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("raw", ["queued", "processing", "running", "in_progress", "PENDING"])
async def test_still_running_statuses_read_as_pending(
    poll_answers: tuple[str, list[dict[str, Any]]], raw: str
) -> None:
    """Every still-running status the API may send is reported as pending, the raw value kept."""
    base_url, bodies = poll_answers
    bodies.append({"status": raw})
    async with AsyncClient(KEY, base_url=base_url) as c:
        state = await c.images.get_deferred("job-1")
    assert (state.status, state.raw_status) == ("pending", raw)


async def test_unknown_final_deferred_status_fails_at_once(
    poll_answers: tuple[str, list[dict[str, Any]]],
) -> None:
    """A status that is neither pending-like nor done (cancelled) raises DeferredError at once."""
    base_url, bodies = poll_answers
    bodies.extend([{"status": "queued"}, {"status": "cancelled"}])
    async with AsyncClient(KEY, base_url=base_url) as c:
        with pytest.raises(DeferredError, match="cancelled") as info:
            await c.images.wait_deferred("job-2", timeout=2.0, poll_interval=0.01)
    assert (info.value.status, info.value.request_id) == ("cancelled", "job-2")
    assert "still" not in str(info.value)  # not the deadline error after polling on


async def test_done_without_images_is_a_response_error(
    poll_answers: tuple[str, list[dict[str, Any]]],
) -> None:
    """A poll answering status done with no data raises APIResponseError instead of pending."""
    base_url, bodies = poll_answers
    bodies.append({"status": "done"})
    async with AsyncClient(KEY, base_url=base_url) as c:
        with pytest.raises(APIResponseError, match="done"):
            await c.images.wait_deferred("job-3", timeout=2.0, poll_interval=0.01)
