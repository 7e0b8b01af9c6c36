"""The fake xAI image API, exercised through plain aiohttp requests."""

from __future__ import annotations

import asyncio
import base64
import email.utils
import io
import json
import signal
import struct
import sys
import time
import zlib
from typing import Any

import aiohttp
import pytest

from xai_images.testing import (
    DEFAULT_API_KEY,
    FakeSettings,
    FakeXAIServer,
    Ledger,
    RecordedRequest,
    Reply,
)

GEN = "/images/generations"
EDIT = "/images/edits"
PNG_URI = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 32).decode()


def auth(server: FakeXAIServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.api_key}"}


async def post(
    session: aiohttp.ClientSession,
    server: FakeXAIServer,
    path: str,
    body: Any,
    *,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, aiohttp.ClientResponse]:
    """POST JSON with the server's key; return (status, decoded JSON body, response)."""
    async with session.post(
        server.base_url + path, json=body, headers=auth(server) if headers is None else headers
    ) as response:
        data = await response.json(content_type=None)
        return response.status, data, response


async def generate(
    session: aiohttp.ClientSession, server: FakeXAIServer, **fields: Any
) -> dict[str, Any]:
    status, data, _ = await post(session, server, GEN, {"prompt": "a red fox", **fields})
    assert status == 200, data
    result: dict[str, Any] = data
    return result


async def download(session: aiohttp.ClientSession, url: str, **kwargs: Any) -> tuple[int, bytes]:
    async with session.get(url, **kwargs) as response:
        return response.status, await response.read()


async def read_partial(response: aiohttp.ClientResponse) -> tuple[bytes, bool]:
    """Read until the body ends or breaks; return the bytes and whether it broke."""
    received = bytearray()
    try:
        async for chunk in response.content.iter_any():
            received += chunk
    except aiohttp.ClientPayloadError:
        return bytes(received), True
    return bytes(received), False


# --- auth ----------------------------------------------------------------------------------------


async def test_missing_authorization_gets_401(server: FakeXAIServer, session: Any) -> None:
    """A request without an Authorization header is answered 401 in the xAI error shape."""
    status, body, response = await post(session, server, GEN, {"prompt": "x"}, headers={})
    assert status == 401
    assert set(body) == {"code", "error"}
    assert response.headers["x-request-id"]


@pytest.mark.parametrize("header", ["Token abc", "Bearer ", "Bearer", "abc"])
async def test_malformed_authorization_gets_401(
    server: FakeXAIServer, session: Any, header: str
) -> None:
    """An Authorization header that is not 'Bearer <token>' is answered 401."""
    status, _, _ = await post(
        session, server, GEN, {"prompt": "x"}, headers={"Authorization": header}
    )
    assert status == 401


async def test_any_token_accepted_without_a_key(server: FakeXAIServer, session: Any) -> None:
    """Started without a key, the fake accepts any non-empty token and offers a default key."""
    assert server.api_key == DEFAULT_API_KEY
    headers = {"Authorization": "Bearer something-else"}
    status, _, _ = await post(session, server, GEN, {"prompt": "x"}, headers=headers)
    assert status == 200


async def test_wrong_key_gets_400_without_echoing_it(session: Any) -> None:
    """Given a key, the fake answers any other token 400 and does not echo the token."""
    async with FakeXAIServer("right-key") as server:
        assert server.api_key == "right-key"
        headers = {"Authorization": "Bearer wrong-secret-key"}
        status, body, _ = await post(session, server, GEN, {"prompt": "x"}, headers=headers)
        assert status == 400
        assert "Incorrect API key" in body["error"]
        assert "wrong-secret-key" not in json.dumps(body)
        status, _, _ = await post(session, server, GEN, {"prompt": "x"})
        assert status == 200


# --- body and validation --------------------------------------------------------------------------


async def test_non_json_content_type_gets_415(server: FakeXAIServer, session: Any) -> None:
    """A body sent as text/plain is answered 415."""
    async with session.post(
        server.base_url + GEN,
        data='{"prompt": "x"}',
        headers={**auth(server), "Content-Type": "text/plain"},
    ) as response:
        assert response.status == 415


async def test_multipart_gets_415(server: FakeXAIServer, session: Any) -> None:
    """A multipart edit (what the OpenAI SDK sends) is answered 415."""
    form = aiohttp.FormData()
    form.add_field("prompt", "x")
    form.add_field("image", b"\x89PNG", filename="a.png", content_type="image/png")
    async with session.post(server.base_url + EDIT, data=form, headers=auth(server)) as response:
        assert response.status == 415


async def test_empty_json_body_gets_415(server: FakeXAIServer, session: Any) -> None:
    """An empty body, even labelled JSON, is answered 415."""
    headers = {**auth(server), "Content-Type": "application/json"}
    async with session.post(server.base_url + GEN, data=b"", headers=headers) as response:
        assert response.status == 415


async def test_json_that_is_not_an_object_gets_415(server: FakeXAIServer, session: Any) -> None:
    """A JSON array instead of an object is answered 415."""
    status, _, _ = await post(session, server, GEN, ["prompt"])
    assert status == 415


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"n": 1}, id="missing-prompt"),
        pytest.param({"prompt": None}, id="null-prompt"),
        pytest.param({"prompt": 5}, id="prompt-not-string"),
        pytest.param({"prompt": "x", "n": "2"}, id="n-string"),
        pytest.param({"prompt": "x", "n": 1.5}, id="n-float"),
        pytest.param({"prompt": "x", "n": True}, id="n-bool"),
        pytest.param({"prompt": "x", "deferred": "yes"}, id="deferred-string"),
        pytest.param({"prompt": "x", "size": "1024x1024"}, id="unknown-size"),
        pytest.param({"prompt": "x", "style": "vivid"}, id="unknown-style"),
        pytest.param({"prompt": "x", "image": {"url": PNG_URI}}, id="image-on-generations"),
    ],
)
async def test_missing_mistyped_or_unknown_field_gets_422(
    server: FakeXAIServer, session: Any, body: dict[str, Any]
) -> None:
    """A missing prompt, a field of the wrong JSON type or an unknown field is answered 422."""
    status, data, _ = await post(session, server, GEN, body)
    assert status == 422
    assert data["error"]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"prompt": ""}, id="empty-prompt"),
        pytest.param({"prompt": "x" * 10_001}, id="long-prompt"),
        pytest.param({"prompt": "x", "n": 0}, id="n-0"),
        pytest.param({"prompt": "x", "n": 11}, id="n-11"),
        pytest.param({"prompt": "x", "quality": "ultra"}, id="quality"),
        pytest.param({"prompt": "x", "response_format": "png"}, id="response-format"),
        pytest.param({"prompt": "x", "aspect_ratio": "5:4"}, id="aspect-ratio"),
        pytest.param({"prompt": "x", "resolution": "4k"}, id="resolution"),
        pytest.param(
            {"prompt": "x", "deferred": True, "response_format": "b64_json"}, id="deferred-b64"
        ),
    ],
)
async def test_out_of_range_value_gets_400(
    server: FakeXAIServer, session: Any, body: dict[str, Any]
) -> None:
    """A value outside the allowed range is answered 400 and nothing is billed."""
    status, data, _ = await post(session, server, GEN, body)
    assert status == 400
    assert data["code"]
    assert server.ledger.images_billed == 0


async def test_boundary_values_are_accepted(server: FakeXAIServer, session: Any) -> None:
    """A 10,000-character prompt, n=10 and every documented enum value are accepted."""
    data = await generate(
        session,
        server,
        prompt="x" * 10_000,
        n=10,
        quality="auto",
        aspect_ratio="19.5:9",
        resolution="1.5k",
        user="u1",
        model="grok-imagine-image-2.0",
        storage_options={"anything": 1},
    )
    assert len(data["data"]) == 10
    assert data["model"] == "grok-imagine-image-2.0"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"prompt": "x"}, id="no-image"),
        pytest.param(
            {"prompt": "x", "image": {"url": PNG_URI}, "images": [{"url": PNG_URI}]}, id="both"
        ),
        pytest.param({"prompt": "x", "images": [{"url": PNG_URI}] * 6}, id="six-images"),
        pytest.param({"prompt": "x", "images": []}, id="empty-images"),
        pytest.param({"prompt": "x", "image": {}}, id="neither-url-nor-file-id"),
        pytest.param(
            {"prompt": "x", "image": {"url": PNG_URI, "file_id": "f"}}, id="url-and-file-id"
        ),
        pytest.param({"prompt": "x", "image": {"url": "data:image/gif;base64,R0lGOD"}}, id="gif"),
        pytest.param({"prompt": "x", "image": {"url": "data:image/png;base64,@@@@"}}, id="bad-b64"),
        pytest.param({"prompt": "x", "image": {"url": "ftp://example.com/a.png"}}, id="ftp"),
    ],
)
async def test_bad_edit_input_gets_400(
    server: FakeXAIServer, session: Any, body: dict[str, Any]
) -> None:
    """Edits without a valid input image (or with too many) are answered 400."""
    status, _, _ = await post(session, server, EDIT, body)
    assert status == 400


async def test_edit_image_over_10_mib_gets_400(server: FakeXAIServer, session: Any) -> None:
    """A data URI whose image is over 10 MiB is answered 400, not refused by the HTTP layer."""
    payload = base64.b64encode(b"\0" * (10 * 1024 * 1024 + 3)).decode()
    body = {"prompt": "x", "image": {"url": "data:image/png;base64," + payload}}
    headers = {**auth(server), "Content-Type": "application/json"}
    # A file object, because aiohttp warns about sending large raw bytes.
    data = io.BytesIO(json.dumps(body).encode())
    async with session.post(server.base_url + EDIT, data=data, headers=headers) as response:
        assert response.status == 400
        assert "large" in (await response.json())["error"]


async def test_edit_mistyped_image_gets_422(server: FakeXAIServer, session: Any) -> None:
    """An edit whose image is a string instead of an object is answered 422."""
    status, _, _ = await post(session, server, EDIT, {"prompt": "x", "image": PNG_URI})
    assert status == 422


async def test_edits_bill_inputs_and_outputs(server: FakeXAIServer, session: Any) -> None:
    """An edit with a data URI, a URL and a file id bills outputs and each input image."""
    images = [{"url": PNG_URI}, {"url": "https://example.com/a.jpg"}, {"file_id": "file-1"}]
    status, data, _ = await post(session, server, EDIT, {"prompt": "mix", "images": images, "n": 2})
    assert status == 200
    assert data["usage"]["cost_in_usd_ticks"] == 2 * 200_000_000 + 3 * 20_000_000
    assert server.ledger.cost_in_usd_ticks == data["usage"]["cost_in_usd_ticks"]
    assert len(data["data"]) == 2


async def test_openai_error_shape(server: FakeXAIServer, session: Any) -> None:
    """With error_shape='openai' errors come as {'error': {'message', 'type', 'code'}}."""
    server.settings.error_shape = "openai"
    status, body, _ = await post(session, server, GEN, {"prompt": ""})
    assert status == 400
    assert set(body["error"]) == {"message", "type", "code"}


async def test_unknown_api_route_gets_404_in_xai_shape(server: FakeXAIServer, session: Any) -> None:
    """There is no variations endpoint: it answers 404 with an xAI error body."""
    status, body, _ = await post(session, server, "/images/variations", {"prompt": "x"})
    assert status == 404
    assert set(body) == {"code", "error"}
    assert server.ledger.requests[-1].status == 404


# --- responses ------------------------------------------------------------------------------------


async def test_generation_answer_shape(server: FakeXAIServer, session: Any) -> None:
    """A generation answers data[] with url, mime_type, revised_prompt, usage and a request id."""
    status, body, response = await post(session, server, GEN, {"prompt": "a red fox", "n": 3})
    assert status == 200
    assert response.headers["x-request-id"]
    assert len(body["data"]) == 3
    for image in body["data"]:
        assert image["url"].startswith(server.origin + "/imgen/xai-tmp-imgen-")
        assert image["url"].endswith(".png")
        assert image["b64_json"] is None
        assert image["mime_type"] == "image/png"
        assert "a red fox" in image["revised_prompt"]
    assert body["usage"] == {"cost_in_usd_ticks": 600_000_000}
    assert body["model"] == "grok-imagine-image"
    assert abs(body["created"] - time.time()) < 60


async def test_b64_json_is_bare_base64_of_the_image(server: FakeXAIServer, session: Any) -> None:
    """response_format b64_json answers bare base64 that decodes to an image of the set size."""
    data = await generate(session, server, response_format="b64_json")
    image = data["data"][0]
    assert image["url"] is None
    raw = base64.b64decode(image["b64_json"], validate=True)
    assert raw.startswith(b"\x89PNG")
    assert len(raw) == server.settings.image_bytes


async def test_b64_prefix_switch(server: FakeXAIServer, session: Any) -> None:
    """With b64_prefix the value is a data URI of the served format."""
    server.settings.b64_prefix = True
    server.settings.image_format = "jpeg"
    data = await generate(session, server, response_format="b64_json")
    value = data["data"][0]["b64_json"]
    assert value.startswith("data:image/jpeg;base64,")
    assert base64.b64decode(value.split(",", 1)[1]).startswith(b"\xff\xd8")
    assert data["data"][0]["mime_type"] == "image/jpeg"


async def test_revised_prompt_can_be_absent(server: FakeXAIServer, session: Any) -> None:
    """With revised_prompt off, images carry no revised_prompt key."""
    server.settings.revised_prompt = False
    data = await generate(session, server)
    assert "revised_prompt" not in data["data"][0]


async def test_same_prompt_gives_same_bytes(server: FakeXAIServer, session: Any) -> None:
    """Images are made deterministically from the prompt, and differ between prompts."""
    first = await generate(session, server, prompt="same", response_format="b64_json", n=2)
    second = await generate(session, server, prompt="same", response_format="b64_json", n=2)
    other = await generate(session, server, prompt="different", response_format="b64_json", n=2)
    values = [[i["b64_json"] for i in d["data"]] for d in (first, second, other)]
    assert values[0] == values[1]
    assert values[0] != values[2]


async def test_download_serves_the_image(server: FakeXAIServer, session: Any) -> None:
    """The image URL answers the image with Content-Type and Content-Length, without a key."""
    data = await generate(session, server)
    async with session.get(data["data"][0]["url"]) as response:
        body = await response.read()
        assert response.status == 200
        assert response.headers["Content-Type"] == "image/png"
        assert int(response.headers["Content-Length"]) == len(body) == 4096
    assert server.ledger.images_downloaded == 1


async def test_unknown_image_id_gets_404(server: FakeXAIServer, session: Any) -> None:
    """A download of an id the fake never issued is answered 404."""
    status, _ = await download(session, server.origin + "/imgen/xai-tmp-imgen-0000.png")
    assert status == 404


async def test_url_ext_forces_the_extension(server: FakeXAIServer, session: Any) -> None:
    """url_ext puts a (possibly wrong) extension in URLs while the bytes stay PNG."""
    server.settings.url_ext = "jpg"
    data = await generate(session, server)
    url = data["data"][0]["url"]
    assert url.endswith(".jpg")
    _, body = await download(session, url)
    assert body.startswith(b"\x89PNG")


# --- latency --------------------------------------------------------------------------------------


async def test_generation_latency_delays_the_answer(server: FakeXAIServer, session: Any) -> None:
    """With generation latency, a download sent later finishes before the generation."""
    url = (await generate(session, server))["data"][0]["url"]
    server.settings.generation_latency = 0.3
    slow = asyncio.ensure_future(generate(session, server, prompt="slow"))
    await server.wait_for_requests(2)
    await download(session, url)
    await slow
    finished = [r.path for r in server.ledger.requests[1:]]
    assert finished[0].startswith("/imgen/")
    assert finished[1] == "/v1/images/generations"


async def test_download_latency_delays_the_download(server: FakeXAIServer, session: Any) -> None:
    """With download latency, a generation sent later finishes before the download."""
    url = (await generate(session, server))["data"][0]["url"]
    server.settings.download_latency = 0.3
    slow = asyncio.ensure_future(download(session, url))
    await server.wait_for_requests(2)
    await generate(session, server, prompt="fast")
    await slow
    finished = [r.path for r in server.ledger.requests[1:]]
    assert finished == ["/v1/images/generations", finished[1]]
    assert finished[1].startswith("/imgen/")


# --- scripted answers -----------------------------------------------------------------------------


async def test_scripted_429_with_retry_after_seconds(server: FakeXAIServer, session: Any) -> None:
    """Reply.error(429, retry_after='2') answers 429 with that header, unbilled, once."""
    server.enqueue(Reply.error(429, retry_after="2"))
    status, body, response = await post(session, server, GEN, {"prompt": "x"})
    assert status == 429
    assert response.headers["Retry-After"] == "2"
    assert body["error"]
    assert server.ledger.images_billed == 0
    assert server.ledger.rate_limited == 1
    assert server.ledger.requests[-1].body == {"prompt": "x"}
    status, _, _ = await post(session, server, GEN, {"prompt": "x"})
    assert status == 200


async def test_scripted_429_with_http_date(server: FakeXAIServer, session: Any) -> None:
    """Retry-After may be given as an HTTP date and is sent verbatim."""
    date = email.utils.formatdate(time.time() + 3, usegmt=True)
    server.enqueue(Reply.error(429, retry_after=date, retry_after_ms=2500))
    status, _, response = await post(session, server, GEN, {"prompt": "x"})
    assert status == 429
    assert response.headers["Retry-After"] == date
    assert response.headers["retry-after-ms"] == "2500"


async def test_scripted_errors_are_fifo(server: FakeXAIServer, session: Any) -> None:
    """Scripted answers are consumed in order by the next POSTs, then requests pass normally."""
    server.enqueue(Reply.error(500), Reply.ok(), Reply.error(503))
    statuses = [(await post(session, server, GEN, {"prompt": "x"}))[0] for _ in range(4)]
    assert statuses == [500, 200, 503, 200]
    assert server.ledger.images_billed == 2


async def test_scripted_error_with_custom_body_and_headers(
    server: FakeXAIServer, session: Any
) -> None:
    """Reply.error can replace the body and add headers."""
    server.enqueue(
        Reply.error(403, body={"code": "blocked", "error": "team"}, headers={"X-A": "1"})
    )
    status, body, response = await post(session, server, EDIT, {"prompt": "x"})
    assert status == 403
    assert body == {"code": "blocked", "error": "team"}
    assert response.headers["X-A"] == "1"


async def test_drop_bills_then_disconnects(server: FakeXAIServer, session: Any) -> None:
    """Reply.drop() bills the images and closes the connection without an answer."""
    server.enqueue(Reply.drop())
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await post(session, server, GEN, {"prompt": "lost", "n": 2})
    assert server.ledger.images_billed == 2
    assert server.ledger.billed_prompts["lost"] == 2
    assert server.ledger.images_delivered == 0
    assert server.ledger.requests[-1].status == 0


async def test_hang_bills_then_waits(server: FakeXAIServer, session: Any) -> None:
    """Reply.hang(s) bills at once, so a client that times out has still paid."""
    server.enqueue(Reply.hang(30))
    timeout = aiohttp.ClientTimeout(total=0.2)
    with pytest.raises(asyncio.TimeoutError):
        async with session.post(
            server.base_url + GEN, json={"prompt": "x"}, headers=auth(server), timeout=timeout
        ):
            pass
    assert server.ledger.images_billed == 1
    assert server.ledger.images_delivered == 0


async def test_short_hang_answers_normally(server: FakeXAIServer, session: Any) -> None:
    """After a short hang the answer arrives as usual."""
    server.enqueue(Reply.hang(0.01))
    status, body, _ = await post(session, server, GEN, {"prompt": "x"})
    assert status == 200
    assert len(body["data"]) == 1


async def test_queues_refuse_the_wrong_kind() -> None:
    """enqueue() refuses download-only replies and enqueue_download() API-only ones."""
    server = FakeXAIServer()
    with pytest.raises(ValueError, match="download"):
        server.enqueue(Reply.truncate())
    with pytest.raises(ValueError, match="API"):
        server.enqueue_download(Reply.hang(1))


# --- random faults --------------------------------------------------------------------------------


async def _fault_statuses(session: Any, seed: int) -> tuple[list[int], int]:
    async with FakeXAIServer(generation_fault_rate=0.5, fault_seed=seed) as server:
        statuses = [(await post(session, server, GEN, {"prompt": "x"}))[0] for _ in range(30)]
        return statuses, server.ledger.images_billed


async def test_random_generation_faults_repeat_with_a_seed(session: Any) -> None:
    """Random faults (429 and 500) follow the seed, and faulted requests are not billed."""
    first, billed = await _fault_statuses(session, 7)
    second, _ = await _fault_statuses(session, 7)
    assert first == second
    assert {429, 500, 200} <= set(first)
    assert billed == first.count(200)


async def test_random_download_faults(server: FakeXAIServer, session: Any) -> None:
    """With download_fault_rate 1 every download fails with a 500 or a truncated body."""
    urls = [i["url"] for i in (await generate(session, server, n=10))["data"]]
    server.settings.download_fault_rate = 1.0
    outcomes = set()
    for url in urls:
        async with session.get(url) as response:
            _, broken = await read_partial(response)
            outcomes.add("truncated" if broken else response.status)
    assert outcomes == {500, "truncated"}
    assert server.ledger.images_downloaded == 0


# --- rate limit -----------------------------------------------------------------------------------


async def test_rps_limit_answers_429_on_the_sixth_request(
    server: FakeXAIServer, session: Any
) -> None:
    """With rps_limit 5, the 6th request within one second gets 429 with Retry-After >= 1."""
    server.settings.rps_limit = 5
    results = [await post(session, server, GEN, {"prompt": "x"}) for _ in range(6)]
    assert [r[0] for r in results] == [200] * 5 + [429]
    assert int(results[5][2].headers["Retry-After"]) >= 1
    assert server.ledger.images_billed == 5
    assert server.ledger.rate_limited == 1


# --- moderation -----------------------------------------------------------------------------------


async def test_moderation_empty(server: FakeXAIServer, session: Any) -> None:
    """moderation='empty' answers 200 with an empty data list."""
    server.settings.moderation = "empty"
    data = await generate(session, server, n=2)
    assert data["data"] == []
    assert server.ledger.images_delivered == 0


async def test_moderation_blocked(server: FakeXAIServer, session: Any) -> None:
    """moderation='blocked' answers images with neither url nor b64_json."""
    server.settings.moderation = "blocked"
    data = await generate(session, server, response_format="b64_json")
    image = data["data"][0]
    assert image["url"] is None
    assert image["b64_json"] is None
    assert image["respect_moderation"] is False


# --- image URLs and downloads ---------------------------------------------------------------------


async def test_single_use_url_expires_after_one_download(
    server: FakeXAIServer, session: Any
) -> None:
    """With url_single_use the second download gets expired_status."""
    server.settings.url_single_use = True
    server.settings.expired_status = 403
    url = (await generate(session, server))["data"][0]["url"]
    assert (await download(session, url))[0] == 200
    assert (await download(session, url))[0] == 403
    assert server.ledger.images_downloaded == 1


async def test_url_ttl_expires(server: FakeXAIServer, session: Any) -> None:
    """After url_ttl seconds a URL answers expired_status (404 by default)."""
    server.settings.url_ttl = 0
    url = (await generate(session, server))["data"][0]["url"]
    assert (await download(session, url))[0] == 404


async def test_truncated_download(server: FakeXAIServer, session: Any) -> None:
    """Reply.truncate() sends fewer bytes than Content-Length, then disconnects."""
    url = (await generate(session, server))["data"][0]["url"]
    server.enqueue_download(Reply.truncate(0.25))
    async with session.get(url) as response:
        assert response.status == 200
        body, broken = await read_partial(response)
        assert broken
        assert len(body) < response.content_length == 4096
    assert server.ledger.images_downloaded == 0
    status, whole = await download(session, url)
    assert status == 200
    assert whole.startswith(body)


async def test_stalled_download_finishes(server: FakeXAIServer, session: Any) -> None:
    """Reply.stall() pauses mid-body and then completes the image."""
    url = (await generate(session, server))["data"][0]["url"]
    server.enqueue_download(Reply.stall(0.5, seconds=0.01))
    status, body = await download(session, url)
    assert status == 200
    assert len(body) == 4096
    assert server.ledger.images_downloaded == 1


async def test_stalled_download_can_abort(server: FakeXAIServer, session: Any) -> None:
    """Reply.stall(abort=True) pauses mid-body and then disconnects."""
    url = (await generate(session, server))["data"][0]["url"]
    server.enqueue_download(Reply.stall(0.5, seconds=0.01, abort=True))
    async with session.get(url) as response:
        body, broken = await read_partial(response)
    assert broken
    assert len(body) == 2048


async def test_download_scripted_error_and_drop(server: FakeXAIServer, session: Any) -> None:
    """Scripted download errors and drops apply to the next downloads, in order."""
    url = (await generate(session, server))["data"][0]["url"]
    # Two drops: aiohttp itself resends a GET once when the connection drops before an answer.
    server.enqueue_download(Reply.error(500, retry_after="1"), Reply.drop(), Reply.drop())
    async with session.get(url) as response:
        assert response.status == 500
        assert response.headers["Retry-After"] == "1"
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await download(session, url)
    assert (await download(session, url))[0] == 200
    assert [r.status for r in server.ledger.downloads()] == [500, 0, 0, 200]


async def test_range_request_gets_206(server: FakeXAIServer, session: Any) -> None:
    """A 'Range: bytes=N-' request gets 206 with Content-Range and the tail of the image."""
    url = (await generate(session, server))["data"][0]["url"]
    _, whole = await download(session, url)
    async with session.get(url, headers={"Range": "bytes=1000-"}) as response:
        tail = await response.read()
        assert response.status == 206
        assert response.headers["Content-Range"] == "bytes 1000-4095/4096"
    assert tail == whole[1000:]
    assert server.ledger.images_downloaded == 2


async def test_range_beyond_the_end_gets_416(server: FakeXAIServer, session: Any) -> None:
    """A range starting past the end is answered 416."""
    url = (await generate(session, server))["data"][0]["url"]
    assert (await download(session, url, headers={"Range": "bytes=4096-"}))[0] == 416


async def test_range_ignored_without_support(server: FakeXAIServer, session: Any) -> None:
    """With support_range off a Range header is ignored: 200 and the whole body."""
    server.settings.support_range = False
    url = (await generate(session, server))["data"][0]["url"]
    status, body = await download(session, url, headers={"Range": "bytes=1000-"})
    assert status == 200
    assert len(body) == 4096


# --- deferred -------------------------------------------------------------------------------------


async def test_deferred_pending_then_done(server: FakeXAIServer, session: Any) -> None:
    """A deferred request bills at once, polls 202 pending, then 200 done with the images."""
    server.settings.deferred_pending_polls = 2
    data = await generate(session, server, deferred=True, n=2)
    request_id = data["request_id"]
    assert server.ledger.images_billed == 2
    poll_url = f"{server.base_url}/images/{request_id}"
    answers = []
    for _ in range(3):
        async with session.get(poll_url, headers=auth(server)) as response:
            answers.append((response.status, await response.json()))
    assert answers[0] == (202, {"status": "pending"})
    assert answers[1] == (202, {"status": "pending"})
    status, done = answers[2]
    assert status == 200
    assert done["status"] == "done"
    assert len(done["data"]) == 2
    assert done["usage"] == {"cost_in_usd_ticks": 400_000_000}
    assert (await download(session, done["data"][0]["url"]))[0] == 200


async def test_deferred_failed(server: FakeXAIServer, session: Any) -> None:
    """With deferred_fail the finished poll is a 200 body with status 'failed'."""
    server.settings.deferred_fail = True
    server.settings.deferred_pending_polls = 0
    request_id = (await generate(session, server, deferred=True))["request_id"]
    async with session.get(f"{server.base_url}/images/{request_id}", headers=auth(server)) as r:
        body = await r.json()
        assert r.status == 200
    assert body["status"] == "failed"
    assert body["error"]


async def test_deferred_poll_unknown_id_and_auth(server: FakeXAIServer, session: Any) -> None:
    """Polling an unknown id gets 404; polling without a key gets 401."""
    url = f"{server.base_url}/images/00000000-0000-0000-0000-000000000000"
    async with session.get(url, headers=auth(server)) as response:
        assert response.status == 404
    async with session.get(url) as response:
        assert response.status == 401


async def test_wait_for_requests_and_peak_concurrency(server: FakeXAIServer, session: Any) -> None:
    """wait_for() returns once the ledger matches; the ledger keeps peak concurrency."""
    server.enqueue(Reply.hang(30), Reply.hang(30), Reply.hang(30))
    tasks = [asyncio.ensure_future(generate(session, server, prompt=str(i))) for i in range(3)]
    await server.wait_for(lambda ledger: ledger.images_billed == 3)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert server.ledger.peak_api_concurrency == 3
    assert server.ledger.images_delivered == 0
    assert server.ledger.peak_download_concurrency == 0


async def test_wait_for_requests_times_out(server: FakeXAIServer) -> None:
    """wait_for_requests() raises asyncio.TimeoutError when too few requests arrive."""
    with pytest.raises(asyncio.TimeoutError):
        await server.wait_for_requests(1, timeout=0.01)


# --- ledger ---------------------------------------------------------------------------------------


async def test_ledger_records_requests(server: FakeXAIServer, session: Any) -> None:
    """Every request is recorded with method, path, headers, parsed body and status."""
    await generate(session, server, prompt="p1", n=2)
    await post(session, server, GEN, {"prompt": ""})
    first, second = server.ledger.requests
    assert first == RecordedRequest(
        "POST", "/v1/images/generations", first.headers, {"prompt": "p1", "n": 2}, 200
    )
    assert first.header("authorization") == f"Bearer {server.api_key}"
    assert second.status == 400
    assert server.ledger.billed_prompts == {"p1": 2}
    assert server.ledger.images_delivered == 2
    assert server.ledger.cost_in_usd_ticks == 400_000_000
    assert len(server.ledger.api_requests()) == 2


async def test_ledger_counts_downloads_carrying_a_key(server: FakeXAIServer, session: Any) -> None:
    """A download that carries an Authorization header is counted as a key leak."""
    url = (await generate(session, server))["data"][0]["url"]
    await download(session, url)
    await download(session, url, headers=auth(server))
    assert server.ledger.downloads_with_auth == 1
    assert server.ledger.images_downloaded == 2
    assert [r.path for r in server.ledger.downloads()] == [url[len(server.origin) :]] * 2


async def test_recorded_request_repr_hides_the_key(server: FakeXAIServer, session: Any) -> None:
    """The repr of a recorded request redacts the Authorization header."""
    await generate(session, server)
    assert server.api_key not in repr(server.ledger.requests[0])
    assert server.api_key not in repr(server.ledger)


async def test_reset_restores_settings_and_empties_queues(
    server: FakeXAIServer, session: Any
) -> None:
    """reset() restores constructor settings in place and empties the ledger and queues."""
    settings, ledger = server.settings, server.ledger
    await generate(session, server)
    server.settings.moderation = "empty"
    server.settings.image_bytes = 10
    server.enqueue(Reply.error(500))
    server.enqueue_download(Reply.error(500))
    server.reset()
    assert server.settings is settings
    assert server.ledger is ledger
    assert settings == FakeSettings()
    assert ledger == Ledger()
    data = await generate(session, server)
    assert (await download(session, data["data"][0]["url"]))[0] == 200


# --- construction ---------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.2", "example.com", "::", "128.0.0.1"])
def test_non_loopback_host_is_refused(host: str) -> None:
    """Binding anything but loopback raises ValueError."""
    with pytest.raises(ValueError, match="loopback"):
        FakeXAIServer(host=host)


async def test_localhost_and_settings_keywords(session: Any) -> None:
    """'localhost' binds 127.0.0.1 and any FakeSettings field can be given as a keyword."""
    async with FakeXAIServer(host="localhost", image_bytes=1000, moderation="empty") as server:
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
        assert server.settings.image_bytes == 1000
        assert (await generate(session, server))["data"] == []


def test_unknown_setting_and_unstarted_server() -> None:
    """An unknown keyword raises TypeError; base_url before start() raises RuntimeError."""
    with pytest.raises(TypeError):
        FakeXAIServer(no_such_switch=1)
    with pytest.raises(RuntimeError):
        _ = FakeXAIServer().base_url


async def test_plugin_fixture(fake_xai_server: FakeXAIServer, session: Any) -> None:
    """The pytest plugin's fake_xai_server fixture yields a started server."""
    data = await generate(session, fake_xai_server)
    assert len(data["data"]) == 1


# --- image bytes ----------------------------------------------------------------------------------


def png_is_valid(data: bytes) -> bool:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset = 8
    kinds = []
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        payload = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert zlib.crc32(kind + payload) == crc, kind
        kinds.append(kind)
        offset += 12 + length
    assert offset == len(data)
    assert kinds[0] == b"IHDR"
    assert kinds[-1] == b"IEND"
    idat = b"".join(
        data[o + 8 : o + 8 + struct.unpack(">I", data[o : o + 4])[0]]
        for o in _chunk_offsets(data, b"IDAT")
    )
    width, height = struct.unpack(">II", data[16:24])
    assert len(zlib.decompress(idat)) == height * (1 + 3 * width)
    return True


def _chunk_offsets(data: bytes, wanted: bytes) -> list[int]:
    offsets, offset = [], 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        if data[offset + 4 : offset + 8] == wanted:
            offsets.append(offset)
        offset += 12 + length
    return offsets


def jpeg_is_valid(data: bytes) -> bool:
    assert data[:2] == b"\xff\xd8"
    assert data[-2:] == b"\xff\xd9"
    offset = 2
    markers = []
    while True:
        assert data[offset] == 0xFF
        marker = data[offset + 1]
        (length,) = struct.unpack(">H", data[offset + 2 : offset + 4])
        markers.append(marker)
        offset += 2 + length
        if marker == 0xDA:
            break
    assert {0xDB, 0xC0, 0xC4} <= set(markers)
    scan = data[offset:-2]
    # In entropy-coded data every 0xFF is followed by a stuffed 0x00.
    assert all(scan[i + 1] == 0 for i in range(len(scan) - 1) if scan[i] == 0xFF)
    return True


def webp_is_valid(data: bytes) -> bool:
    assert data[:4] == b"RIFF"
    assert data[8:12] == b"WEBP"
    (riff_size,) = struct.unpack("<I", data[4:8])
    assert riff_size == len(data) - 8
    offset, kinds = 12, []
    while offset < len(data):
        kind = data[offset : offset + 4]
        (size,) = struct.unpack("<I", data[offset + 4 : offset + 8])
        kinds.append(kind)
        offset += 8 + size + (size % 2)
    assert offset == len(data)
    assert kinds[:2] == [b"VP8X", b"VP8L"]
    return True


CHECKS = {"png": png_is_valid, "jpeg": jpeg_is_valid, "webp": webp_is_valid}


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
@pytest.mark.parametrize("size", [2_000, 4_097, 70_001, 500_000])
async def test_images_are_well_formed_and_sized(
    server: FakeXAIServer, session: Any, fmt: str, size: int
) -> None:
    """Each format is structurally valid and has the requested size within a few bytes."""
    server.settings.image_format = fmt
    server.settings.image_bytes = size
    data = await generate(session, server, prompt=f"{fmt} {size}")
    assert data["data"][0]["mime_type"] == f"image/{fmt}"
    assert data["data"][0]["url"].endswith(f".{fmt}")
    status, body = await download(session, data["data"][0]["url"])
    assert status == 200
    assert CHECKS[fmt](body)
    assert size - 12 <= len(body) <= size


# --- command line ---------------------------------------------------------------------------------


async def test_command_line_serves_and_stops_on_sigint(session: Any) -> None:
    """`python -m xai_images.testing` prints its base URL, serves, and exits 0 on SIGINT."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "xai_images.testing",
        "--port",
        "0",
        "--format",
        "jpeg",
        "--batch-processing-seconds",
        "0.5",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert line.startswith("xai-images fake server on http://127.0.0.1:")
        base_url = line.split()[4]
        headers = {"Authorization": "Bearer anything"}
        async with session.post(base_url + GEN, json={"prompt": "cli"}, headers=headers) as r:
            url = (await r.json())["data"][0]["url"]
        status, body = await download(session, url)
        assert status == 200
        assert body.startswith(b"\xff\xd8")
        async with session.post(base_url + "/batches", json={"name": "n"}, headers=headers) as r:
            assert r.status == 200
            assert (await r.json())["batch_id"].startswith("batch_")
        proc.send_signal(signal.SIGINT)
        _, stderr = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0
        assert b"Traceback" not in stderr
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_command_line_refuses_non_loopback() -> None:
    """`--host 0.0.0.0` is refused with exit code 2."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "xai_images.testing",
        "--host",
        "0.0.0.0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert b"loopback" in stderr


def test_b64_answers_encode_exactly_as_json_does() -> None:
    """The fake's b64 answers join cached images in without re-encoding; the bytes must be what
    json.dumps gives, whatever else the answer holds (values that look like its markers too)."""
    import json

    from xai_images.testing._core import encode_answer
    from xai_images.testing._imagegen import image_b64

    png = image_b64("png", 70_000, 1, prefix=False)
    uri = image_b64("jpeg", 70_000, 2, prefix=True)
    answers = [
        {"data": [{"b64_json": png, "revised_prompt": 'a "quoted" \u00e9'}, {"b64_json": uri}]},
        {"data": [{"revised_prompt": "\x000", "b64_json": png}], "usage": {"x": 1}},
        {"data": [{"b64_json": "not cached"}, "odd", {"url": "https://x"}]},
        {"created": 1},
    ]
    for answer in answers:
        assert encode_answer(answer) == json.dumps(answer).encode()
