"""Public event hooks: what the client publishes, to whom, and what a failing hook does."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from xai_images import AsyncClient, ConfigurationError, InternalServerError
from xai_images.hooks import (
    CostReported,
    DownloadRetry,
    Event,
    RateLimited,
    RequestSent,
    ResponseReceived,
    RetryScheduled,
)
from xai_images.testing import FakeXAIServer, Reply

KEY = "xai-SECRET-fake-h00k5"


pytestmark = pytest.mark.usefixtures("xai_instant_retries")


@pytest.fixture
def fake_xai_server_options() -> dict[str, Any]:
    """The fake requires this module's key."""
    return {"api_key": KEY}


async def test_a_request_publishes_sent_answer_and_cost(server: FakeXAIServer) -> None:
    """A successful generation emits RequestSent, ResponseReceived and CostReported, in order."""
    events: list[Event] = []
    async with AsyncClient(KEY, base_url=server.base_url, event_hooks=[events.append]) as c:
        resp = await c.images.generate("a fox")
    assert [type(e) for e in events] == [RequestSent, ResponseReceived, CostReported]
    sent, answer, cost = events
    assert isinstance(sent, RequestSent)
    assert sent.attempt == 1
    assert sent.path == "/v1/images/generations"
    assert sent.method == "POST"
    assert isinstance(answer, ResponseReceived)
    assert answer.status == 200
    assert answer.request_id == resp.request_id
    assert isinstance(cost, CostReported)
    assert resp.usage is not None
    assert cost.cost_in_usd_ticks == resp.usage.cost_in_usd_ticks


async def test_a_retried_429_publishes_rate_limited_then_retry(server: FakeXAIServer) -> None:
    """A 429 with Retry-After is reported as RateLimited, then RetryScheduled with that delay."""
    server.enqueue(Reply.error(429, retry_after=2))
    events: list[Event] = []
    async with AsyncClient(KEY, base_url=server.base_url) as c:
        c.add_event_hook(events.append)
        await c.images.generate("a fox")
    limited = [e for e in events if isinstance(e, RateLimited)]
    retries = [e for e in events if isinstance(e, RetryScheduled)]
    assert [e.retry_after for e in limited] == [2.0]
    assert [(e.attempt, e.delay, e.reason) for e in retries] == [(1, 2.0, "429")]
    assert [e.attempt for e in events if isinstance(e, RequestSent)] == [1, 2]


async def test_events_carry_the_origin_passed_to_the_request(server: FakeXAIServer) -> None:
    """Every event of a request names the origin object the caller passed, by identity."""
    server.enqueue(Reply.error(503))
    origin = object()
    events: list[Event] = []
    async with AsyncClient(KEY, base_url=server.base_url, event_hooks=[events.append]) as c:
        await c._request("POST", "/images/generations", body={"prompt": "x"}, origin=origin)
    assert events
    assert all(e.origin is origin for e in events)


async def test_download_retries_name_the_image(server: FakeXAIServer, tmp_path: Path) -> None:
    """A retried download publishes DownloadRetry whose origin is the GeneratedImage."""
    server.enqueue_download(Reply.error(503))
    events: list[Event] = []
    async with AsyncClient(KEY, base_url=server.base_url, event_hooks=[events.append]) as c:
        resp = await c.images.generate("a fox")
        await resp.data[0].save(tmp_path / "fox")
    retries = [e for e in events if isinstance(e, DownloadRetry)]
    assert len(retries) == 1
    assert retries[0].origin is resp.data[0]
    assert retries[0].attempt == 1
    assert "503" in retries[0].reason


async def test_a_hook_that_raises_is_logged_once_and_ignored(
    server: FakeXAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A failing hook never fails the request; it is logged once; the other hooks still run."""
    seen: list[Event] = []

    def broken(event: Event) -> None:
        raise RuntimeError("observer bug")

    async with AsyncClient(KEY, base_url=server.base_url, event_hooks=[broken, seen.append]) as c:
        with caplog.at_level(logging.ERROR, logger="xai_images"):
            await c.images.generate("a fox")
            await c.images.generate("a cat")
    assert len([r for r in caplog.records if "event hook" in r.getMessage()]) == 1
    assert len([e for e in seen if isinstance(e, RequestSent)]) == 2


async def test_removed_hook_is_no_longer_called(server: FakeXAIServer) -> None:
    """remove_event_hook stops the calls; removing an unknown hook raises ValueError."""
    events: list[Event] = []
    async with AsyncClient(KEY, base_url=server.base_url, event_hooks=[events.append]) as c:
        c.remove_event_hook(events.append)
        await c.images.generate("a fox")
        with pytest.raises(ValueError, match="not an event hook"):
            c.remove_event_hook(events.append)
    assert events == []


async def test_give_up_still_reports_each_retry(server: FakeXAIServer) -> None:
    """When 5xx answers outlast the retries, each scheduled retry was reported, then it raises."""
    server.enqueue(*[Reply.error(500) for _ in range(3)])
    events: list[Event] = []
    async with AsyncClient(KEY, base_url=server.base_url, event_hooks=[events.append]) as c:
        with pytest.raises(InternalServerError):
            await c.images.generate("a fox")
    assert [e.attempt for e in events if isinstance(e, RetryScheduled)] == [1, 2]


def test_event_hooks_must_be_callables() -> None:
    """event_hooks that are not a list of callables are a ConfigurationError."""
    with pytest.raises(ConfigurationError, match="event_hooks"):
        AsyncClient(KEY, event_hooks=[1])  # type: ignore[list-item]
