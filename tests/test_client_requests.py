"""Request shapes and retry sequences, with aioresponses (no sockets)."""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from yarl import URL

import xai_images
from xai_images import (
    AsyncClient,
    FileId,
    InternalServerError,
    RateLimitError,
    RetryPolicy,
    ValidationError,
)
from xai_images.hooks import RetryScheduled
from xai_images.testing import instant_retries

KEY = "xai-test-key-0123456789"
BASE = "https://api.example.test/v1"
GEN = f"{BASE}/images/generations"
EDIT = f"{BASE}/images/edits"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64
OK = {"data": [{"url": "https://imgen.example.test/a.png"}], "usage": {"cost_in_usd_ticks": 1}}


class _CompatResponse(aiohttp.ClientResponse):
    """aioresponses 0.7.9 predates aiohttp 3.14's required ``stream_writer`` argument."""

    def __init__(self, method: str, url: URL, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", SimpleNamespace(output_size=0))
        super().__init__(method, url, **kwargs)


@pytest.fixture
def mocked(monkeypatch: pytest.MonkeyPatch) -> Iterator[aioresponses]:
    monkeypatch.setattr("aioresponses.core.ClientResponse", _CompatResponse)
    with aioresponses() as m, instant_retries():
        yield m


@pytest.fixture
async def client() -> AsyncIterator[AsyncClient]:
    async with AsyncClient(KEY, base_url=BASE) as c:
        yield c


def calls(m: aioresponses, url: str, method: str = "POST") -> list[Any]:
    return list(m.requests.get((method, URL(url)), []))


def sent_body(call: Any) -> dict[str, Any]:
    data = call.kwargs["data"]
    return json.loads(data)  # type: ignore[no-any-return]


async def test_generate_sends_only_the_set_fields(
    mocked: aioresponses, client: AsyncClient
) -> None:
    """A generate call with a few options sends exactly those fields as JSON."""
    mocked.post(GEN, payload=OK)
    await client.images.generate("a cat in a tree", n=4, quality="high", aspect_ratio="16:9")
    (call,) = calls(mocked, GEN)
    assert sent_body(call) == {
        "prompt": "a cat in a tree",
        "n": 4,
        "quality": "high",
        "aspect_ratio": "16:9",
    }
    assert call.kwargs["headers"]["Content-Type"] == "application/json"


async def test_the_key_goes_in_a_per_request_authorization_header(
    mocked: aioresponses, client: AsyncClient
) -> None:
    """Each API request carries Bearer auth; the session has no default Authorization."""
    mocked.post(GEN, payload=OK)
    await client.images.generate("x")
    (call,) = calls(mocked, GEN)
    assert call.kwargs["headers"]["Authorization"] == f"Bearer {KEY}"
    assert "Authorization" not in client._require_session().headers


async def test_api_requests_do_not_follow_redirects(
    mocked: aioresponses, client: AsyncClient
) -> None:
    """Redirects are never followed, so the key cannot be carried to another URL."""
    mocked.post(GEN, payload=OK)
    await client.images.generate("x")
    (call,) = calls(mocked, GEN)
    assert call.kwargs["allow_redirects"] is False


async def test_a_redirect_answer_is_an_error_not_followed(
    mocked: aioresponses, client: AsyncClient
) -> None:
    """A 3xx answer raises APIStatusError mentioning base_url."""
    mocked.post(GEN, status=301, headers={"Location": "https://elsewhere.test/"})
    with pytest.raises(xai_images.APIStatusError, match="base_url") as info:
        await client.images.generate("x")
    assert info.value.status_code == 301


async def test_extra_body_is_sent(mocked: aioresponses, client: AsyncClient) -> None:
    """extra_body fields are sent and override named arguments."""
    mocked.post(GEN, payload=OK)
    await client.images.generate("x", quality="low", extra_body={"quality": "x", "seed": 1})
    (call,) = calls(mocked, GEN)
    assert sent_body(call) == {"prompt": "x", "quality": "x", "seed": 1}


async def test_edit_with_url_sends_json_image_object(
    mocked: aioresponses, client: AsyncClient
) -> None:
    """An edit with a URL input sends {"image": {"url": ...}} as JSON, never multipart."""
    mocked.post(EDIT, payload=OK)
    await client.images.edit("add a rainbow", image="https://example.com/photo.jpg")
    (call,) = calls(mocked, EDIT)
    assert sent_body(call) == {
        "prompt": "add a rainbow",
        "image": {"url": "https://example.com/photo.jpg"},
    }
    assert call.kwargs["headers"]["Content-Type"] == "application/json"


async def test_edit_with_a_local_path_sends_a_sniffed_data_uri(
    mocked: aioresponses, client: AsyncClient, tmp_path: Path
) -> None:
    """A local file becomes a data URI typed from its bytes, not its name."""
    path = tmp_path / "photo.png"  # JPEG bytes under a .png name
    path.write_bytes(JPEG)
    mocked.post(EDIT, payload=OK)
    await client.images.edit("x", image=path)
    (call,) = calls(mocked, EDIT)
    url = sent_body(call)["image"]["url"]
    assert url.startswith("data:image/jpeg;base64,")


async def test_edit_with_several_kinds_of_inputs(
    mocked: aioresponses, client: AsyncClient, tmp_path: Path
) -> None:
    """images= mixes URL, bytes, a binary file, a path string and a FileId, in order."""
    path = tmp_path / "a.jpg"
    path.write_bytes(JPEG)
    mocked.post(EDIT, payload=OK)
    await client.images.edit(
        "merge <IMAGE_0> and <IMAGE_1>",
        images=["https://example.com/x.png", PNG, io.BytesIO(JPEG), str(path), FileId("file-9")],
        aspect_ratio="1:1",
    )
    (call,) = calls(mocked, EDIT)
    images = sent_body(call)["images"]
    assert images[0] == {"url": "https://example.com/x.png"}
    assert images[1]["url"].startswith("data:image/png;base64,")
    assert images[2]["url"].startswith("data:image/jpeg;base64,")
    assert images[3]["url"].startswith("data:image/jpeg;base64,")
    assert images[4] == {"file_id": "file-9"}


async def test_edit_with_a_data_uri_is_sent_unchanged(
    mocked: aioresponses, client: AsyncClient
) -> None:
    """A valid data URI is passed through as given."""
    uri = "data:image/png;base64," + base64.b64encode(PNG).decode()
    mocked.post(EDIT, payload=OK)
    await client.images.edit("x", image=uri)
    (call,) = calls(mocked, EDIT)
    assert sent_body(call)["image"] == {"url": uri}


async def test_retry_on_503_then_success(mocked: aioresponses, client: AsyncClient) -> None:
    """A 503 is retried and the second answer is returned."""
    mocked.post(GEN, status=503, payload={"code": "x", "error": "busy"})
    mocked.post(GEN, payload=OK)
    resp = await client.images.generate("x")
    assert resp.data[0].url == OK["data"][0]["url"]  # type: ignore[index]
    assert len(calls(mocked, GEN)) == 2


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
async def test_retryable_statuses_are_retried(
    mocked: aioresponses, client: AsyncClient, status: int
) -> None:
    """429, 500, 502, 503 and 504 each get retried."""
    mocked.post(GEN, status=status)
    mocked.post(GEN, payload=OK)
    await client.images.generate("x")
    assert len(calls(mocked, GEN)) == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 415, 422])
async def test_client_errors_are_not_retried(
    mocked: aioresponses, client: AsyncClient, status: int
) -> None:
    """4xx answers other than 429 are raised after one attempt."""
    mocked.post(GEN, status=status, repeat=True)
    with pytest.raises(xai_images.APIStatusError):
        await client.images.generate("x")
    assert len(calls(mocked, GEN)) == 1


async def test_retries_stop_at_max_attempts(mocked: aioresponses, client: AsyncClient) -> None:
    """With the default max_retries=2, three 500s raise InternalServerError after 3 attempts."""
    mocked.post(GEN, status=500, repeat=True)
    with pytest.raises(InternalServerError):
        await client.images.generate("x")
    assert len(calls(mocked, GEN)) == 3


async def test_per_call_max_retries_overrides_the_client(
    mocked: aioresponses, client: AsyncClient
) -> None:
    """max_retries=0 on a call means exactly one attempt."""
    mocked.post(GEN, status=500, repeat=True)
    with pytest.raises(InternalServerError):
        await client.images.generate("x", max_retries=0)
    assert len(calls(mocked, GEN)) == 1


async def test_client_max_retries_sets_attempts(mocked: aioresponses) -> None:
    """AsyncClient(max_retries=4) makes 5 attempts."""
    mocked.post(GEN, status=502, repeat=True)
    async with AsyncClient(KEY, base_url=BASE, max_retries=4) as c:
        with pytest.raises(InternalServerError):
            await c.images.generate("x")
    assert len(calls(mocked, GEN)) == 5


async def test_retry_after_is_honoured(mocked: aioresponses, client: AsyncClient) -> None:
    """The wait before retrying a 429 is the server's Retry-After."""
    slept: list[float] = []

    def record(event: object) -> None:
        if isinstance(event, RetryScheduled):
            slept.append(event.delay)

    client.add_event_hook(record)
    mocked.post(GEN, status=429, headers={"Retry-After": "3"})
    mocked.post(GEN, status=429, headers={"retry-after-ms": "1500"})
    mocked.post(GEN, payload=OK)
    await client.images.generate("x")
    assert slept == [3.0, 1.5]


async def test_long_retry_after_raises_at_once(mocked: aioresponses, client: AsyncClient) -> None:
    """A 429 asking for more than max_retry_after raises RateLimitError carrying the wait."""
    mocked.post(GEN, status=429, headers={"Retry-After": "600"}, repeat=True)
    with pytest.raises(RateLimitError) as info:
        await client.images.generate("x")
    assert info.value.retry_after == 600.0
    assert len(calls(mocked, GEN)) == 1


async def test_rate_limit_error_after_retries_carries_retry_after(
    mocked: aioresponses, client: AsyncClient
) -> None:
    """When 429s outlast the retries, RateLimitError has the last Retry-After."""
    mocked.post(GEN, status=429, headers={"Retry-After": "1"}, repeat=True)
    with pytest.raises(RateLimitError) as info:
        await client.images.generate("x")
    assert info.value.retry_after == 1.0
    assert len(calls(mocked, GEN)) == 3


async def test_max_elapsed_caps_total_retry_time(mocked: aioresponses) -> None:
    """No retry starts when its wait would pass max_elapsed."""
    mocked.post(GEN, status=429, headers={"Retry-After": "30"}, repeat=True)
    policy = RetryPolicy(max_attempts=10, max_elapsed=10.0)
    async with AsyncClient(KEY, base_url=BASE, retry=policy) as c:
        with pytest.raises(RateLimitError):
            await c.images.generate("x")
    assert len(calls(mocked, GEN)) == 1


async def test_retry_decisions_are_logged_at_debug(
    mocked: aioresponses, client: AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Each exchange and each retry decision is one DEBUG line on the xai_images logger."""
    mocked.post(GEN, status=503)
    mocked.post(GEN, payload=OK, headers={"x-request-id": "rid-42"})
    with caplog.at_level("DEBUG", logger="xai_images"):
        await client.images.generate("x")
    messages = [r.getMessage() for r in caplog.records if r.name == "xai_images"]
    assert any(re.search(r"POST /v1/images/generations -> 503 in \d", m) for m in messages)
    assert any(
        re.search(r"retrying POST /v1/images/generations in .* 2 of 3\): 503", m) for m in messages
    )
    assert any("-> 200" in m and "rid-42" in m for m in messages)


async def test_response_request_id_comes_from_the_header(
    mocked: aioresponses, client: AsyncClient
) -> None:
    """resp.request_id and each image's request_id are the x-request-id header."""
    mocked.post(GEN, payload=OK, headers={"x-request-id": "rid-7"})
    resp = await client.images.generate("x")
    assert resp.request_id == "rid-7"
    assert resp.data[0].request_id == "rid-7"


async def test_b64_answer_is_decoded(mocked: aioresponses, client: AsyncClient) -> None:
    """A b64_json answer gives decoded bytes and a bare base64 b64_json property."""
    encoded = base64.b64encode(PNG).decode()
    mocked.post(GEN, payload={"data": [{"b64_json": "data:image/png;base64," + encoded}]})
    resp = await client.images.generate("x", response_format="b64_json")
    assert resp.data[0].content == PNG
    assert resp.data[0].b64_json == encoded


async def test_invalid_base64_is_an_api_response_error(
    mocked: aioresponses, client: AsyncClient
) -> None:
    """A b64_json value that is not base64 raises APIResponseError."""
    mocked.post(GEN, payload={"data": [{"b64_json": "!!!not base64!!!"}]})
    with pytest.raises(xai_images.APIResponseError):
        await client.images.generate("x", response_format="b64_json")


async def test_non_json_answer_is_an_api_response_error(
    mocked: aioresponses, client: AsyncClient
) -> None:
    """A 200 whose body is not JSON raises APIResponseError."""
    mocked.post(GEN, body="<html>oops</html>")
    with pytest.raises(xai_images.APIResponseError, match="not JSON"):
        await client.images.generate("x")


async def test_validation_failure_sends_nothing(mocked: aioresponses, client: AsyncClient) -> None:
    """An invalid argument raises before any request."""
    with pytest.raises(ValidationError):
        await client.images.generate("x", n=11)
    assert mocked.requests == {}


async def test_edit_checks_fields_before_reading_files(
    mocked: aioresponses, client: AsyncClient
) -> None:
    """A bad field is reported even when the input file does not exist (no I/O first)."""
    with pytest.raises(ValidationError) as info:
        await client.images.edit("x", image="/nonexistent/a.png", quality="ultra")
    assert info.value.field == "quality"
