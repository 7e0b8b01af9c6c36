"""Error statuses map onto the exception table with the server's message; the key never leaks."""

from __future__ import annotations

import logging
from typing import Any

import pytest

import xai_images
from xai_images import (
    APIStatusError,
    AsyncClient,
    AuthenticationError,
    BadRequestError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    UnprocessableEntityError,
    UnsupportedMediaTypeError,
)
from xai_images.testing import FakeXAIServer, Reply

KEY = "xai-SECRET-errors-5f3a9c"


@pytest.fixture
def fake_xai_server_options() -> dict[str, Any]:
    """The fake requires this module's key."""
    return {"api_key": KEY}


@pytest.fixture
def xai_client_options() -> dict[str, Any]:
    """No retries: each error reaches the test as it came."""
    return {"max_retries": 0}


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (415, UnsupportedMediaTypeError),
        (422, UnprocessableEntityError),
        (429, RateLimitError),
        (500, InternalServerError),
        (502, InternalServerError),
        (503, InternalServerError),
        (418, APIStatusError),
    ],
)
async def test_status_maps_to_its_class(
    server: FakeXAIServer, client: AsyncClient, status: int, cls: type[APIStatusError]
) -> None:
    """Each status raises its class from the table, with the status and the server's message."""
    server.enqueue(Reply.error(status))
    with pytest.raises(cls) as info:
        await client.images.generate("x")
    error = info.value
    assert type(error) is cls
    assert error.status_code == status
    assert error.message == f"scripted error {status}"
    assert error.request_id
    assert error.request_id in str(error)
    assert error.headers.get("x-request-id") == error.request_id
    assert (error.method, error.path) == ("POST", "/v1/images/generations")


async def test_openai_error_shape_is_read(server: FakeXAIServer, client: AsyncClient) -> None:
    """The {"error": {"message", "code"}} shape gives the message and the code."""
    server.settings.error_shape = "openai"
    server.enqueue(Reply.error(422))
    with pytest.raises(UnprocessableEntityError) as info:
        await client.images.generate("x")
    assert info.value.message == "scripted error 422"
    assert info.value.code


async def test_xai_error_shape_is_read(server: FakeXAIServer, client: AsyncClient) -> None:
    """The {"code", "error": "message"} shape gives the message and the code."""
    server.enqueue(Reply.error(403, body={"code": "team-blocked", "error": "Team is blocked"}))
    with pytest.raises(PermissionDeniedError) as info:
        await client.images.generate("x")
    assert (info.value.message, info.value.code) == ("Team is blocked", "team-blocked")
    assert info.value.body == {"code": "team-blocked", "error": "Team is blocked"}


async def test_wrong_key_400_mentions_the_key(server: FakeXAIServer) -> None:
    """xAI answers a wrong key with 400; the error says to check the key, without showing it."""
    wrong = "xai-WRONG-key-777777"
    async with AsyncClient(wrong, base_url=server.base_url) as c:
        with pytest.raises(BadRequestError, match="XAI_API_KEY") as info:
            await c.images.generate("x")
    assert wrong not in str(info.value)
    assert wrong not in repr(info.value)


async def test_401_tells_how_to_set_the_key(client: AsyncClient, server: FakeXAIServer) -> None:
    """A 401 error says how to provide a key."""
    server.enqueue(Reply.error(401))
    with pytest.raises(AuthenticationError, match="XAI_API_KEY"):
        await client.images.generate("x")


async def test_rate_limit_error_carries_retry_after(
    server: FakeXAIServer, client: AsyncClient
) -> None:
    """RateLimitError.retry_after is the server's Retry-After, and the message says it."""
    server.enqueue(Reply.error(429, retry_after="7"))
    with pytest.raises(RateLimitError) as info:
        await client.images.generate("x")
    assert info.value.retry_after == 7.0
    assert "7.0 s" in str(info.value)


async def test_a_key_echoed_by_the_server_is_redacted(
    server: FakeXAIServer, client: AsyncClient
) -> None:
    """If the server echoes the key in its message, the error shows *** instead."""
    server.enqueue(Reply.error(400, body={"code": "bad", "error": f"Incorrect API key {KEY}"}))
    with pytest.raises(BadRequestError) as info:
        await client.images.generate("x")
    for text in (str(info.value), repr(info.value), info.value.message, repr(info.value.body)):
        assert KEY not in text
    assert "***" in info.value.message


async def test_the_key_never_reaches_debug_logs(
    server: FakeXAIServer, client: AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """At DEBUG, no log record of any logger contains the key, across success and failure."""
    with caplog.at_level(logging.DEBUG):
        await client.images.generate("ok")
        server.enqueue(Reply.error(500), Reply.drop())
        with pytest.raises(InternalServerError):
            await client.images.generate("x")
        with pytest.raises(xai_images.OutcomeUnknownError):
            await client.images.generate("x")
    assert caplog.records
    for record in caplog.records:
        assert KEY not in record.getMessage()
        assert KEY not in str(record.__dict__)


async def test_errors_derive_from_the_one_root(server: FakeXAIServer, client: AsyncClient) -> None:
    """Every error the client raises is an XAIImagesError (aiohttp types never escape)."""
    server.enqueue(Reply.error(500), Reply.drop())
    for _ in range(2):
        with pytest.raises(xai_images.XAIImagesError):
            await client.images.generate("x")
