"""Wire facts of xAI's own TypeScript SDK (xai-org/xai-sdk-ts), checked against this SDK.

Each test speaks to a scripted server on 127.0.0.1 that records every request as it arrived
(method, the path with its percent-encoding, headers, raw body) and answers what the test
scripts. docs/conformance.md lists the facts and the deliberate differences.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_asyncio
from aiohttp import web
from multidict import CIMultiDictProxy

from xai_images import (
    APIResponseError,
    APIStatusError,
    AsyncClient,
    BatchTimeoutError,
    DeferredError,
    NotFoundError,
    PermissionDeniedError,
    UnprocessableEntityError,
    ValidationError,
)

REQUEST_ID = "req_test"
BATCH = {
    "batch_id": "batch_1934e8b5",
    "name": "My New Batch",
    "create_time": "2025-11-11",
    "expire_time": "2999-11-12",
    "cancel_time": None,
    "cancel_by_xai_message": None,
    "state": {
        "num_requests": 0,
        "num_pending": 0,
        "num_success": 0,
        "num_error": 0,
        "num_cancelled": 0,
    },
}
FILE = {
    "id": "file_a128090d",
    "object": "file",
    "bytes": 6,
    "created_at": 1_762_345_678,
    "expires_at": 1_762_432_078,
    "filename": "report.jsonl",
    "purpose": "batch",
}
IMAGE = {"url": "https://imgen.x.ai/1.jpeg", "mime_type": "image/jpeg"}


@attrs.frozen
class Seen:
    """One request as the server received it."""

    method: str
    raw_path: str
    headers: CIMultiDictProxy[str]
    body: bytes

    @property
    def line(self) -> str:
        return f"{self.method} {self.raw_path}"

    def json(self) -> Any:
        return json.loads(self.body)


_UNSET: Any = object()


@attrs.frozen
class Answer:
    status: int = 200
    json: Any = _UNSET
    text: str | bytes | None = None
    headers: dict[str, str] = attrs.Factory(dict)
    cut: bool = False  # announce the whole text, send half, then close the connection


class Wire:
    """A scripted API: answers in order, then the default; records every request."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.answers: collections.deque[Answer] = collections.deque()
        self.default = Answer(json={})
        self.base_url = ""

    def reply(self, status: int = 200, **kwargs: Any) -> None:
        self.answers.append(Answer(status, **kwargs))

    def always(self, status: int = 200, **kwargs: Any) -> None:
        self.default = Answer(status, **kwargs)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(Seen(request.method, request.raw_path, request.headers, body))
        answer = self.answers.popleft() if self.answers else self.default
        headers = {"x-request-id": REQUEST_ID, **answer.headers}
        if answer.json is not _UNSET:
            return web.Response(
                status=answer.status,
                text=json.dumps(answer.json),
                content_type="application/json",
                headers=headers,
            )
        payload = answer.text if answer.text is not None else b""
        if isinstance(payload, str):
            payload = payload.encode()
        if answer.cut:
            response = web.StreamResponse(status=answer.status, headers=headers)
            response.content_length = len(payload)
            await response.prepare(request)
            await response.write(payload[: len(payload) // 2])
            assert request.transport is not None
            request.transport.close()
            return response
        return web.Response(status=answer.status, body=payload, headers=headers)


@pytest_asyncio.fixture
async def wire() -> AsyncIterator[Wire]:
    scripted = Wire()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", scripted.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    scripted.base_url = f"http://127.0.0.1:{port}/v1"
    try:
        yield scripted
    finally:
        await runner.cleanup()


@pytest_asyncio.fixture
async def client(wire: Wire) -> AsyncIterator[AsyncClient]:
    async with AsyncClient("test-key", base_url=wire.base_url, max_retries=0) as made:
        yield made


# -- 1. ids in paths are encoded exactly once ------------------------------------------------


async def test_cancel_puts_the_suffix_after_the_id_encoded_once(
    wire: Wire, client: AsyncClient
) -> None:
    """cancel("team/batch:1") sends POST /v1/batches/team%2Fbatch%3A1:cancel, with no body."""
    wire.always(json=BATCH)
    await client.batches.cancel("team/batch:1")
    [seen] = wire.seen
    assert seen.line == "POST /v1/batches/team%2Fbatch%3A1:cancel"
    assert seen.body == b""


async def test_every_id_in_a_path_is_encoded_once(wire: Wire, client: AsyncClient) -> None:
    """Batch, file and deferred ids keep their %2F and %3A on the wire."""
    wire.always(json=BATCH)
    await client.batches.get("team/batch:1")
    wire.always(json={"results": [], "pagination_token": None})
    await client.batches.results("team/batch:1", page_size=100, page_token="page_2")
    wire.always(json={"batch_request_metadata": [], "pagination_token": None})
    [_ async for _ in client.batches.list_requests("team/batch:1", page_size=50)]
    wire.always(json=FILE)
    await client.files.get("file/../1:x")
    wire.always(json={"id": "file/../1:x", "deleted": True})
    await client.files.delete("file/../1:x")
    wire.always(status=202, text="")
    await client.images.get_deferred("req/1:2")
    assert [s.line for s in wire.seen] == [
        "GET /v1/batches/team%2Fbatch%3A1",
        "GET /v1/batches/team%2Fbatch%3A1/results?limit=100&pagination_token=page_2",
        "GET /v1/batches/team%2Fbatch%3A1/requests?limit=50",
        "GET /v1/files/file%2F..%2F1%3Ax",
        "DELETE /v1/files/file%2F..%2F1%3Ax",
        "GET /v1/images/req%2F1%3A2",
    ]


async def test_batch_add_path_and_body(wire: Wire, client: AsyncClient) -> None:
    """add() POSTs {"batch_requests": [...]} as JSON to the encoded batch's /requests."""
    from xai_images import GenerateRequest

    await client.batches.add("team/batch", [GenerateRequest("a fox", id="img_001")])
    [seen] = wire.seen
    assert seen.line == "POST /v1/batches/team%2Fbatch/requests"
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.json() == {
        "batch_requests": [
            {
                "batch_request_id": "img_001",
                "batch_request": {"image_generation": {"prompt": "a fox"}},
            }
        ]
    }


# -- 2, 3. deferred polls --------------------------------------------------------------------


@pytest.mark.parametrize("body", [None, [], ["done"], "done", 3], ids=repr)
async def test_malformed_200_on_a_poll_raises_at_once(
    wire: Wire, client: AsyncClient, body: Any
) -> None:
    """A 200 whose body is null, an array or a scalar is an APIResponseError, not pending."""
    wire.always(json=body)
    with pytest.raises(APIResponseError) as info:
        await client.images.get_deferred("req_1")
    assert info.value.request_id == REQUEST_ID
    with pytest.raises(APIResponseError):
        await client.images.wait_deferred("req_1", timeout=30, poll_interval=0.01)
    assert len(wire.seen) == 2  # one poll each: no polling until the deadline


async def test_200_without_status_or_images_raises(wire: Wire, client: AsyncClient) -> None:
    """A 200 object with neither a status nor images is unreadable, not pending."""
    wire.always(json={})
    with pytest.raises(APIResponseError, match="no status"):
        await client.images.get_deferred("req_1")


@pytest.mark.parametrize(
    "answer",
    [
        {"text": ""},
        {"text": "Accepted"},
        {"text": "<html>queued</html>"},
        {"json": {"status": "pending"}},
        {"json": None},
    ],
    ids=["empty", "text", "html", "json", "null"],
)
async def test_202_is_pending_whatever_its_body(
    wire: Wire, client: AsyncClient, answer: dict[str, Any]
) -> None:
    """A 202 means pending with no body, text, or JSON; the polled id fills request_id."""
    wire.always(status=202, **answer)
    state = await client.images.get_deferred("req_1")
    assert state.status == "pending"
    assert state.request_id == "req_1"
    assert state.x_request_id == REQUEST_ID


async def test_done_poll_keeps_both_ids(wire: Wire, client: AsyncClient) -> None:
    """The deferred id (body, else the one polled) and the poll's x-request-id are both kept."""
    wire.always(json={"status": "done", "data": [IMAGE]}, headers={"x-request-id": "poll_9"})
    state = await client.images.get_deferred("req_1")
    assert (state.status, state.request_id, state.x_request_id) == ("done", "req_1", "poll_9")
    assert state.response is not None
    assert state.response.request_id == "req_1"
    wire.always(json={"request_id": "req_body", "status": "pending"})
    state = await client.images.get_deferred("req_1")
    assert state.request_id == "req_body"


async def test_failed_deferred_raises_deferred_error(wire: Wire, client: AsyncClient) -> None:
    """A failed status (a 200 body) raises DeferredError from wait (TS returns it instead)."""
    wire.always(
        json={
            "request_id": "req_1",
            "status": "failed",
            "error": {"code": "invalid_argument", "message": "bad prompt"},
        }
    )
    state = await client.images.get_deferred("req_1")
    assert (state.status, state.error) == ("failed", "bad prompt")
    with pytest.raises(DeferredError, match="bad prompt"):
        await client.images.wait_deferred("req_1", poll_interval=0.01)


async def test_start_keeps_the_post_request_id(wire: Wire, client: AsyncClient) -> None:
    """A deferred start answers {request_id}; the POST's x-request-id is kept beside it."""
    wire.always(json={"request_id": "req_deferred"}, headers={"x-request-id": "post_1"})
    started = await client.images.generate_deferred("a fox")
    assert (started.request_id, started.x_request_id) == ("req_deferred", "post_1")
    assert wire.seen[0].json() == {"prompt": "a fox", "deferred": True}


# -- 4, 5. usage and request ids -------------------------------------------------------------


async def test_usage_keeps_tokens_beside_the_cost(wire: Wire, client: AsyncClient) -> None:
    """Every usage field xAI sends is kept; usage is None when the answer has none."""
    usage = {
        "cost_in_usd_ticks": 200_000_000,
        "input_tokens": 12,
        "input_tokens_details": {"text_tokens": 10, "image_tokens": 2, "cached_tokens": 1},
        "output_tokens": 4096,
        "output_tokens_details": {"text_tokens": 0, "reasoning_tokens": 7, "image_tokens": 4089},
        "total_tokens": 4108,
    }
    wire.reply(json={"data": [IMAGE], "usage": usage})
    wire.reply(json={"data": [IMAGE]})
    wire.reply(json={"data": [IMAGE], "usage": {"cost_in_usd_ticks": 5, "input_tokens": "x"}})
    first = await client.images.generate("a fox")
    assert first.usage is not None
    assert first.usage.cost_usd is not None
    assert str(first.usage.cost_usd) == "0.02"
    assert (first.usage.input_tokens, first.usage.output_tokens) == (12, 4096)
    assert first.usage.total_tokens == 4108
    assert first.usage.input_tokens_details is not None
    assert first.usage.input_tokens_details.image_tokens == 2
    assert first.usage.output_tokens_details is not None
    assert first.usage.output_tokens_details.reasoning_tokens == 7
    assert first.request_id == REQUEST_ID
    assert (await client.images.generate("a fox")).usage is None
    odd = (await client.images.generate("a fox")).usage
    assert odd is not None
    assert (odd.cost_in_usd_ticks, odd.input_tokens) == (5, None)


async def test_batch_objects_carry_the_request_id(wire: Wire, client: AsyncClient) -> None:
    """Batches (create, get, list, cancel) and result pages carry the answer's x-request-id."""
    wire.always(json=BATCH)
    created = await client.batches.create("My New Batch", input_file_id="file-abc123")
    assert wire.seen[-1].json() == {"name": "My New Batch", "input_file_id": "file-abc123"}
    assert created.request_id == REQUEST_ID
    assert (await client.batches.get("b")).request_id == REQUEST_ID
    assert (await client.batches.cancel("b")).request_id == REQUEST_ID
    wire.always(json={"batches": [BATCH], "pagination_token": None})
    assert [b.request_id async for b in client.batches.list(page_size=20)] == [REQUEST_ID]
    assert wire.seen[-1].line == "GET /v1/batches?limit=20"
    wire.always(json={"results": [], "pagination_token": ""})
    page = await client.batches.results("b")
    assert (page.request_id, page.next_page_token) == (REQUEST_ID, None)


@pytest.mark.parametrize(
    ("call", "payload"),
    [
        (lambda c: c.batches.get("b"), "not json"),
        (lambda c: c.batches.get("b"), {**BATCH, "batch_id": ""}),
        (lambda c: c.batches.cancel("b"), {**BATCH, "batch_id": None}),
        (lambda c: c.batches.results("b"), {"results": {}}),
        (lambda c: c.files.get("f"), {**FILE, "id": ""}),
        (lambda c: c.files.delete("f"), {"id": "f", "deleted": False}),
        (lambda c: c.files.create_public_url("f"), {"expires_at": 1}),
        (lambda c: c.files.revoke_public_url("f"), {"id": "f"}),
    ],
    ids=[
        "non-object batch",
        "empty batch_id",
        "null batch_id",
        "results not a list",
        "file without id",
        "deleted false",
        "no public_url",
        "no revoked",
    ],
)
async def test_malformed_answers_raise_with_the_request_id(
    wire: Wire, client: AsyncClient, call: Any, payload: Any
) -> None:
    """A 2xx answer missing what the TS SDK requires is an APIResponseError with its id."""
    wire.always(json=payload)
    with pytest.raises(APIResponseError) as info:
        await call(client)
    assert info.value.request_id == REQUEST_ID


async def test_list_without_its_array_raises(wire: Wire, client: AsyncClient) -> None:
    """A batch or file listing without its array is refused, naming the request id."""
    wire.always(json={"pagination_token": None})
    with pytest.raises(APIResponseError) as info:
        [_ async for _ in client.batches.list()]
    assert info.value.request_id == REQUEST_ID
    wire.always(json={"data": "nope"})
    with pytest.raises(APIResponseError):
        [_ async for _ in client.files.list()]


# -- 6. structured errors --------------------------------------------------------------------


async def test_openai_error_form_keeps_type_param_and_code(wire: Wire, client: AsyncClient) -> None:
    """{"error": {message, type, code, param}} fills all four, and the request id."""
    wire.always(
        status=422,
        json={
            "error": {
                "message": "n must be at most 10",
                "type": "invalid_request_error",
                "code": "invalid_argument",
                "param": "n",
            }
        },
    )
    with pytest.raises(UnprocessableEntityError) as info:
        await client.images.generate("a fox")
    error = info.value
    assert (error.message, error.type, error.code, error.param) == (
        "n must be at most 10",
        "invalid_request_error",
        "invalid_argument",
        "n",
    )
    assert error.request_id == REQUEST_ID


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"code": "not-found", "error": "Batch not found"}, ("Batch not found", "not-found", None)),
        ({"message": "Internal", "code": 13}, ("Internal", "13", None)),
        ({"error": {"message": "slow down", "code": 429}}, ("slow down", "429", None)),
        ({"code": "x", "error": {"message": "m", "type": "t"}}, ("m", "x", "t")),
        ("plain text failure", ("plain text failure", None, None)),
    ],
    ids=["xai", "flat-numeric", "openai-numeric", "code-beside", "text"],
)
async def test_every_error_form_is_read(
    wire: Wire, client: AsyncClient, body: Any, expected: tuple[Any, ...]
) -> None:
    """Each error body form gives message, code (numbers as text) and type."""
    if isinstance(body, str):
        wire.always(status=403, text=body)
    else:
        wire.always(status=403, json=body)
    with pytest.raises(PermissionDeniedError) as info:
        await client.files.get("f")
    assert (info.value.message, info.value.code, info.value.type) == expected
    assert info.value.param is None


async def test_a_5xx_on_a_read_is_retried(wire: Wire) -> None:
    """GETs are retried on 5xx (TS: retries on 5xx and 429); a 404 is not."""
    async with AsyncClient("k", base_url=wire.base_url, max_retries=2) as retrying:
        wire.reply(status=503, json={"error": "busy"}, headers={"retry-after": "0"})
        wire.always(json=FILE)
        assert (await retrying.files.get("f")).id == FILE["id"]
        assert len(wire.seen) == 2
        wire.always(status=404, json={"code": "not-found", "error": "no file"})
        with pytest.raises(NotFoundError):
            await retrying.files.get("f")
        assert len(wire.seen) == 3


async def test_a_429_on_a_paid_post_is_retried(wire: Wire) -> None:
    """A 429 (refused, so not run) is sent again after Retry-After; a 400 is not."""
    async with AsyncClient("k", base_url=wire.base_url, max_retries=2) as retrying:
        wire.reply(
            status=429, json={"error": {"message": "rate limited"}}, headers={"retry-after": "0"}
        )
        wire.always(json={"data": [IMAGE]})
        assert len((await retrying.images.generate("a fox")).images) == 1
        assert [s.line for s in wire.seen] == ["POST /v1/images/generations"] * 2


# -- 7. batches.wait -------------------------------------------------------------------------


def with_state(**changes: Any) -> dict[str, Any]:
    state = {**BATCH["state"], **{k: v for k, v in changes.items() if k.startswith("num_")}}  # type: ignore[dict-item]
    rest = {k: v for k, v in changes.items() if not k.startswith("num_")}
    return {**BATCH, **rest, "state": state}


async def test_wait_polls_until_nothing_is_pending(wire: Wire, client: AsyncClient) -> None:
    """wait() polls get() until requests exist and none is pending, then returns it."""
    wire.reply(json=with_state())  # a file batch still being validated: not done
    wire.reply(json=with_state(num_requests=2, num_pending=1))
    wire.always(json=with_state(num_requests=2, num_pending=0, num_success=2))
    batch = await client.batches.wait("team/b", poll_interval=0.01)
    assert batch.state.num_success == 2
    assert batch.request_id == REQUEST_ID
    assert [s.line for s in wire.seen] == ["GET /v1/batches/team%2Fb"] * 3


@pytest.mark.parametrize(
    "ending",
    [
        {"cancel_time": "2025-11-11T12:00:04Z"},
        {"cancel_by_xai_message": "Batch cancelled by xAI"},
        {"expire_time": "2020-01-01T00:00:00Z"},
    ],
    ids=["cancelled", "cancelled-by-xai", "expired"],
)
async def test_wait_returns_a_batch_that_ended(
    wire: Wire, client: AsyncClient, ending: dict[str, Any]
) -> None:
    """A batch without requests counts as finished once cancelled (by anyone) or expired."""
    wire.reply(json=with_state())
    wire.always(json=with_state(**ending))
    batch = await client.batches.wait("b", poll_interval=0.01)
    assert batch.cancelled or batch.expired()
    assert len(wire.seen) == 2


async def test_wait_times_out_with_a_typed_error(wire: Wire, client: AsyncClient) -> None:
    """Still pending at the deadline: BatchTimeoutError (a TimeoutError) with the last batch."""
    wire.always(json=with_state(num_requests=3, num_pending=3))
    with pytest.raises(BatchTimeoutError) as info:
        await client.batches.wait("b", poll_interval=0.01, timeout=0.05)
    assert isinstance(info.value, TimeoutError)
    assert info.value.batch.state.num_pending == 3
    assert info.value.timeout == 0.05


async def test_wait_stops_at_a_failing_poll(wire: Wire, client: AsyncClient) -> None:
    """A poll answered 404 raises NotFoundError at once: one request, no more polling."""
    wire.always(status=404, json={"code": "not-found", "error": "Batch not found"})
    with pytest.raises(NotFoundError):
        await client.batches.wait("batch_missing", poll_interval=0.01)
    assert len(wire.seen) == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"poll_interval": 0}, "poll_interval"), ({"timeout": -1}, "timeout"), ({}, "batch_id")],
)
async def test_wait_checks_its_arguments_before_sending(
    wire: Wire, client: AsyncClient, kwargs: dict[str, Any], field: str
) -> None:
    """Bad arguments raise ValidationError naming the field; nothing is sent."""
    batch_id = "" if field == "batch_id" else "b"
    with pytest.raises(ValidationError) as info:
        await client.batches.wait(batch_id, **kwargs)
    assert info.value.field == field
    assert wire.seen == []


# -- 8. Files --------------------------------------------------------------------------------


async def test_upload_sends_metadata_before_the_file(
    wire: Wire, client: AsyncClient, tmp_path: Path
) -> None:
    """Multipart fields in the order expires_after, purpose, file; the file object is read."""
    wire.always(json=FILE)
    path = tmp_path / "report.jsonl"
    path.write_bytes(b'{"a":1}\n')
    stored = await client.files.upload(path, expires_after=86_400, purpose="batch")
    [seen] = wire.seen
    assert seen.line == "POST /v1/files"
    assert seen.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert seen.headers["Accept"] == "application/json"
    body = seen.body
    order = [body.index(f'name="{name}"'.encode()) for name in ("expires_after", "purpose", "file")]
    assert order == sorted(order)
    assert b'filename="report.jsonl"' in body
    assert b'{"a":1}\n' in body
    assert (stored.id, stored.purpose, stored.request_id) == (FILE["id"], "batch", REQUEST_ID)


async def test_upload_leaves_out_unset_metadata(wire: Wire, client: AsyncClient) -> None:
    """Without expires_after and purpose only the file part is sent, named by filename."""
    wire.always(json=FILE)
    await client.files.upload(b"hello", filename="notes.txt", expires_after=None)
    body = wire.seen[0].body
    assert b'name="expires_after"' not in body
    assert b'name="purpose"' not in body
    assert b'filename="notes.txt"' in body


async def test_list_sends_its_options_and_sorts_by_creation_by_default(
    wire: Wire, client: AsyncClient
) -> None:
    """files.list() sends sort_by=created_at by default, and limit/order/token when set."""
    wire.reply(json={"data": [FILE], "pagination_token": "file_prev"})
    wire.always(json={"data": []})
    listed = [f async for f in client.files.list(page_size=10, order="asc", sort_by="size")]
    assert [f.request_id for f in listed] == [REQUEST_ID]
    [_ async for _ in client.files.list()]
    assert [s.line for s in wire.seen] == [
        "GET /v1/files?limit=10&order=asc&sort_by=size",
        "GET /v1/files?limit=10&order=asc&sort_by=size&pagination_token=file_prev",
        "GET /v1/files?sort_by=created_at",
    ]


async def test_public_urls_are_made_and_revoked(wire: Wire, client: AsyncClient) -> None:
    """create_public_url POSTs JSON ({expires_after} or {}); revoke POSTs no body."""
    url = "https://files-cdn.x.ai/abc/file_1.png"
    wire.reply(json={"public_url": url, "expires_at": 1_755_600_000})
    wire.reply(json={"public_url": url, "expires_at": 1_755_600_000})
    wire.reply(json={"id": "file_1", "revoked": True, "public_url": url})
    wire.reply(json={"id": "file_1", "revoked": False})
    made = await client.files.create_public_url("file_1", expires_after=86_400)
    await client.files.create_public_url("file_1")
    assert await client.files.revoke_public_url("file_1") is True
    assert await client.files.revoke_public_url("file_1") is False
    assert (made.public_url, made.expires_at, made.request_id) == (url, 1_755_600_000, REQUEST_ID)
    assert [s.line for s in wire.seen] == [
        "POST /v1/files/file_1/public-url",
        "POST /v1/files/file_1/public-url",
        "POST /v1/files/file_1/public-url/revoke",
        "POST /v1/files/file_1/public-url/revoke",
    ]
    assert wire.seen[0].headers["Content-Type"] == "application/json"
    assert (wire.seen[0].json(), wire.seen[1].json()) == ({"expires_after": 86_400}, {})
    assert wire.seen[2].body == b""
    assert "Content-Type" not in wire.seen[2].headers


async def test_content_is_streamed_to_a_file(
    wire: Wire, client: AsyncClient, tmp_path: Path
) -> None:
    """GET /files/{id}/content with Accept */*; the bytes land under the final name whole."""
    data = bytes(range(256)) * 4096  # 1 MiB, several chunks
    wire.always(text=data, headers={"Content-Type": "application/octet-stream"})
    stored = await client.files.download("file/1", tmp_path / "out.bin")
    [seen] = wire.seen
    assert seen.line == "GET /v1/files/file%2F1/content"
    assert seen.headers["Accept"] == "*/*"
    assert (tmp_path / "out.bin").read_bytes() == data
    assert (stored.size, stored.path, stored.mime_type) == (
        len(data),
        tmp_path / "out.bin",
        "application/octet-stream",
    )
    assert await asyncio.to_thread(os.listdir, tmp_path) == ["out.bin"]  # no part file left
    assert await client.files.read("file/1") == data


@pytest.mark.usefixtures("xai_instant_retries")
async def test_a_cut_download_starts_over(wire: Wire, tmp_path: Path) -> None:
    """A body cut short is a lost answer to a GET: fetched again from byte 0, and only the
    whole content lands under the final name."""
    data = bytes(range(256)) * 4096
    wire.reply(text=data, cut=True)
    wire.always(text=data)
    async with AsyncClient("k", base_url=wire.base_url, max_retries=2) as retrying:
        stored = await retrying.files.download("file_1", tmp_path / "out.bin")
    assert len(wire.seen) == 2
    assert stored.size == len(data)
    assert await asyncio.to_thread((tmp_path / "out.bin").read_bytes) == data
    assert await asyncio.to_thread(os.listdir, tmp_path) == ["out.bin"]


async def test_content_into_a_directory_takes_a_safe_stored_name(
    wire: Wire, client: AsyncClient, tmp_path: Path
) -> None:
    """Into a directory, the stored filename is made one safe name inside it."""
    wire.reply(json={**FILE, "filename": "../../escape.jsonl"})
    wire.always(text=b"x")
    stored = await client.files.download("file_1", tmp_path)
    assert stored.path is not None
    assert stored.path.parent == tmp_path
    assert stored.path.read_bytes() == b"x"


async def test_a_failed_download_leaves_nothing(
    wire: Wire, client: AsyncClient, tmp_path: Path
) -> None:
    """A 404 on the content leaves no file and no part file."""
    wire.always(status=404, json={"code": "not-found", "error": "no such file"})
    with pytest.raises(NotFoundError):
        await client.files.download("file_1", tmp_path / "out.bin")
    assert await asyncio.to_thread(os.listdir, tmp_path) == []


# -- 9. output and storage_options -----------------------------------------------------------


async def test_output_and_storage_options_round_trip(wire: Wire, client: AsyncClient) -> None:
    """Both objects are sent exactly as given; file_output comes back on each image."""
    file_output = {
        "file_id": "file_9",
        "filename": "fox.jpg",
        "expires_at": 1_800_000_000,
        "public_url": "https://files-cdn.x.ai/fox.jpg",
        "public_url_error": None,
        "public_url_expires_at": 1_700_003_600,
    }
    wire.always(json={"data": [{**IMAGE, "file_output": file_output}]})
    output = {"upload_urls": ["https://bucket.example/fox.jpg?X-Sig=abc"]}
    storage = {
        "filename": "fox.jpg",
        "expires_after": 86_400,
        "public_url": {"expires_after": 3600},
    }
    answer = await client.images.generate("a fox", output=output, storage_options=storage)
    assert wire.seen[0].json() == {"prompt": "a fox", "output": output, "storage_options": storage}
    got = answer.data[0].file_output
    assert got is not None
    assert attrs.asdict(got) == file_output


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"storage_options": {"expires_after": 60}}, "storage_options.filename"),
        (
            {"storage_options": {"filename": "a", "expires_after": 2_592_001}},
            "storage_options.expires_after",
        ),
        (
            {"storage_options": {"filename": "a", "public_url": {"expires_after": 60}}},
            "storage_options.public_url.expires_after",
        ),
        ({"storage_options": {"filename": "a", "public_url": "yes"}}, "storage_options.public_url"),
        ({"output": {"upload_urls": ["u1", "u2"]}, "n": 2}, "output.upload_urls[0]"),
        ({"output": {"upload_urls": ["https://a/1"]}, "n": 2}, "output.upload_urls"),
        ({"output": {}}, "output"),
        (
            {"output": {"upload_urls": ["https://a/1"]}, "response_format": "b64_json"},
            "response_format",
        ),
    ],
    ids=[
        "no-filename",
        "store-too-long",
        "public-too-short",
        "public-not-bool",
        "not-http",
        "count-not-n",
        "no-upload-urls",
        "b64",
    ],
)
async def test_bad_output_fields_are_refused_before_sending(
    wire: Wire, client: AsyncClient, kwargs: dict[str, Any], field: str
) -> None:
    """A bad output or storage_options raises ValidationError naming the field; nothing sent."""
    with pytest.raises(ValidationError) as info:
        await client.images.generate("a fox", **kwargs)
    assert info.value.field == field
    assert wire.seen == []


async def test_status_error_is_an_api_status_error(wire: Wire, client: AsyncClient) -> None:
    """Every status error keeps its body and headers beside the parsed fields."""
    wire.always(status=418, json={"error": {"message": "teapot", "type": "odd"}})
    with pytest.raises(APIStatusError) as info:
        await client.batches.get("b")
    assert info.value.status_code == 418
    assert info.value.type == "odd"
    assert info.value.body == {"error": {"message": "teapot", "type": "odd"}}


async def test_signed_upload_urls_stay_out_of_reprs_records_and_errors(
    wire: Wire, client: AsyncClient
) -> None:
    """A signed URL is a secret: sent, but never in a repr, a manifest record or an error."""
    from xai_images import GenerateRequest

    secret = "https://bucket.example/fox.jpg?X-Signature=SECRET"
    request = GenerateRequest("a fox", output={"upload_urls": [secret]})
    assert "SECRET" not in repr(request)
    assert "SECRET" not in json.dumps(request.to_json())
    with pytest.raises(ValidationError) as info:
        await client.images.generate("a fox", n=2, output={"upload_urls": [secret]})
    assert "SECRET" not in str(info.value)
    wire.always(json={"data": [{"url": secret, "mime_type": "image/jpeg"}]})
    await client.images.send(request)
    assert wire.seen[0].json()["output"] == {"upload_urls": [secret]}


# -- images: bodies and answers as the TS SDK's tests send and read them ----------------------


async def test_generate_posts_the_params_unchanged(wire: Wire, client: AsyncClient) -> None:
    """POST /v1/images/generations, JSON in and out, the fields exactly as given."""
    wire.always(json={"data": [IMAGE], "usage": {"cost_in_usd_ticks": 200_000_000}})
    params = {
        "model": "grok-imagine-image-2.0",
        "n": 2,
        "aspect_ratio": "16:9",
        "resolution": "2k",
        "quality": "low",
        "response_format": "url",
    }
    answer = await client.images.generate("A cat in a tree", **params)
    [seen] = wire.seen
    assert seen.line == "POST /v1/images/generations"
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["Accept"] == "application/json"
    assert seen.json() == {"prompt": "A cat in a tree", **params}
    assert answer.usage is not None
    assert str(answer.usage.cost_usd) == "0.02"
    assert answer.request_id == REQUEST_ID


async def test_edit_sends_url_and_file_id_sources_as_given(wire: Wire, client: AsyncClient) -> None:
    """URL and file_id inputs go as {"url"} / {"file_id"}; local bytes become a typed data URL."""
    from xai_images import FileId
    from xai_images.testing import sample_image

    wire.always(json={"data": [IMAGE]})
    await client.images.edit("Add a hat", image="https://example.com/cat.png")
    await client.images.edit("Add a hat", image=FileId("file_123"))
    png = sample_image("png", 64)
    await client.images.edit(
        "Put <IMAGE_0> into <IMAGE_1> with <IMAGE_2>",
        images=[png, FileId("file_123"), "https://example.com/hat.png"],
        aspect_ratio="1:1",
    )
    assert [s.line for s in wire.seen] == ["POST /v1/images/edits"] * 3
    assert wire.seen[0].json()["image"] == {"url": "https://example.com/cat.png"}
    assert wire.seen[1].json()["image"] == {"file_id": "file_123"}
    sent = wire.seen[2].json()
    assert "image" not in sent
    assert sent["aspect_ratio"] == "1:1"
    assert sent["images"][0]["url"].startswith("data:image/png;base64,")
    assert sent["images"][1:] == [{"file_id": "file_123"}, {"url": "https://example.com/hat.png"}]


async def test_unknown_bytes_are_refused_not_sent_as_octet_stream(
    wire: Wire, client: AsyncClient
) -> None:
    """Where TS sends data:application/octet-stream, this SDK refuses before sending."""
    with pytest.raises(ValidationError) as info:
        await client.images.edit("Edit", image=b"not an image")
    assert info.value.field == "image"
    assert wire.seen == []


@pytest.mark.parametrize(
    "payload", ["not json", {"usage": {"cost_in_usd_ticks": 1}}, {"data": "nope"}], ids=repr
)
async def test_unreadable_image_answers_raise(
    wire: Wire, client: AsyncClient, payload: Any
) -> None:
    """A non-object body, a missing or non-list data: APIResponseError with the request id."""
    wire.always(json=payload)
    with pytest.raises(APIResponseError) as info:
        await client.images.generate("A lighthouse")
    assert info.value.request_id == REQUEST_ID


async def test_model_ids_are_encoded_once_and_listings_carry_the_request_id(
    wire: Wire, client: AsyncClient
) -> None:
    """GET /v1/image-generation-models/custom%2Falias%3A2; each model keeps its answer's id."""
    model = {"id": "grok-imagine-image-2.0", "object": "model"}
    wire.reply(json={"models": [model]})
    wire.always(json=model)
    [listed] = await client.images.models.list()
    got = await client.images.models.get("custom/alias:2")
    assert [s.line for s in wire.seen] == [
        "GET /v1/image-generation-models",
        "GET /v1/image-generation-models/custom%2Falias%3A2",
    ]
    assert (listed.request_id, got.request_id) == (REQUEST_ID, REQUEST_ID)
    wire.always(json={"object": "list", "data": [model]})
    with pytest.raises(APIResponseError) as info:
        await client.images.models.list()
    assert info.value.request_id == REQUEST_ID
