"""State and plumbing every part of the fake server shares: auth, errors, bodies, images."""

from __future__ import annotations

import asyncio
import collections
import contextvars
import json
import math
import random
import time
import uuid
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from aiohttp import web

from ._imagegen import MIME_TYPES, image_b64, image_b64_json, variant_for
from ._ledger import Ledger
from ._replies import Reply
from ._settings import DEFAULT_API_KEY, FakeSettings

__all__ = ["Dropped", "ServerCore", "StoredImage", "current_body", "send_json"]

_ERROR_CODES = {
    400: "Client specified an invalid argument",
    401: "Unauthenticated",
    403: "Permission denied",
    404: "Not found",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Unprocessable entity",
    429: "Too many requests",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
}
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}

# The parsed body of the request being handled, for the ledger (a ContextVar rather than request
# storage: its key type differs across aiohttp versions).
current_body: contextvars.ContextVar[list[Any]] = contextvars.ContextVar("xai_fake_body")


class Dropped(Exception):
    """Internal: the handler closed the connection on purpose; nothing must be answered."""


@attrs.define
class StoredImage:
    """An image the image host serves.

    ``created`` is on the settings' clock; ``expires_at`` (batch results) is absolute, while
    real-time images expire ``settings.url_ttl`` after ``created``, read at download time.
    """

    fmt: str
    size: int
    variant: int
    created: float
    expires_at: float | None = None
    used: bool = False


class ServerCore:
    """The state shared by the handlers, and the helpers they answer with."""

    def __init__(self, api_key: str | None, settings: FakeSettings) -> None:
        self._required_key = api_key
        self.api_key: str = api_key if api_key is not None else DEFAULT_API_KEY
        self.settings: FakeSettings = settings
        self.ledger = Ledger()
        self._window: collections.deque[float] = collections.deque()
        self._rng = random.Random(settings.fault_seed)
        self._rng_seed = settings.fault_seed
        self.images: dict[str, StoredImage] = {}
        self._waiters: list[tuple[Callable[[Ledger], bool], asyncio.Future[None]]] = []
        self._origin = ""
        # Scripted replies: real-time POSTs, downloads, and Batch/Files calls (by route, or any).
        self.api_queue: collections.deque[Reply] = collections.deque()
        self.download_queue: collections.deque[Reply] = collections.deque()
        self.batch_queues: dict[str | None, collections.deque[Reply]] = {}

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:PORT``: the root of both the API and the image host paths."""
        if not self._origin:
            raise RuntimeError("FakeXAIServer is not started")
        return self._origin

    def image_url(self, image_id: str, fmt: str | None = None) -> str:
        """The download URL of an image id (as it appears in answers)."""
        ext = self.settings.url_ext or fmt or self.settings.image_format
        return f"{self.origin}/imgen/{image_id}.{ext}"

    def now(self) -> float:
        """The settings' clock, in epoch seconds."""
        return self.settings.clock()

    def random(self) -> float:
        """The next seeded random number (re-seeded when ``fault_seed`` changes)."""
        if self.settings.fault_seed != self._rng_seed:
            self._rng = random.Random(self.settings.fault_seed)
            self._rng_seed = self.settings.fault_seed
        return self._rng.random()

    def next_batch_reply(self, route: str) -> Reply | None:
        """The scripted reply for a Batch/Files call on ``route``, or ``None``."""
        for key in (route, None):
            queue = self.batch_queues.get(key)
            if queue:
                return queue.popleft()
        return None

    def wake_waiters(self) -> None:
        """Resolve the ``wait_for`` calls whose predicate now holds."""
        for predicate, future in self._waiters:
            if not future.done() and predicate(self.ledger):
                future.set_result(None)

    def bill(self, prompt: str, n: int, ticks: int) -> None:
        """Charge ``n`` images of ``prompt``, costing ``ticks``."""
        ledger = self.ledger
        ledger.images_billed += n
        ledger.billed_prompts[prompt] += n
        ledger.cost_in_usd_ticks += ticks
        self.wake_waiters()

    def make_images(
        self,
        prompt: str,
        n: int,
        response_format: str,
        *,
        expires_at: float | None = None,
        blocked: bool = False,
    ) -> list[dict[str, Any]]:
        """Build the ``data`` items of an answer, registering URL images with the image host.

        Args:
            expires_at: when URL images stop working (batch results); ``None``: ``url_ttl``.
            blocked: moderate these images whatever ``settings.moderation`` says.
        """
        settings = self.settings
        if settings.moderation == "empty":
            return []
        fmt = settings.image_format
        size = settings.image_bytes
        mime = MIME_TYPES[fmt]
        images: list[dict[str, Any]] = []
        for index in range(n):
            item: dict[str, Any]
            if blocked or settings.moderation == "blocked":
                item = {"url": None, "b64_json": None, "respect_moderation": False}
            else:
                variant = variant_for(f"{prompt}\x00{index}", size)
                if response_format == "b64_json":
                    item = {
                        "url": None,
                        "b64_json": image_b64(fmt, size, variant, prefix=settings.b64_prefix),
                    }
                else:
                    image_id = f"xai-tmp-imgen-{uuid.uuid4().hex}"
                    self.images[image_id] = StoredImage(
                        fmt, size, variant, self.now(), expires_at=expires_at
                    )
                    item = {"url": self.image_url(image_id, fmt), "b64_json": None}
            item["mime_type"] = mime
            if settings.revised_prompt:
                item["revised_prompt"] = f"A detailed, vivid rendering of: {prompt}"
            images.append(item)
        return images

    # --- answering ----------------------------------------------------------------------------

    def error(
        self,
        status: int,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> web.Response:
        """An error answer in the configured error shape (429s are counted)."""
        code = _ERROR_CODES.get(status, "Error")
        if body is None:
            if self.settings.error_shape == "openai":
                kind = _OPENAI_TYPES.get(
                    status, "server_error" if status >= 500 else "invalid_request_error"
                )
                body = {"error": {"message": message, "type": kind, "code": code}}
            else:
                body = {"code": code, "error": message}
        if status == 429:
            self.ledger.rate_limited += 1
        out = {"x-request-id": str(uuid.uuid4())}
        if headers:
            out.update(headers)
        return web.json_response(body, status=status, headers=out)

    def scripted_error(self, reply: Reply) -> web.Response:
        """The answer of a ``Reply.error(...)``."""
        headers: dict[str, str] = {}
        if reply.retry_after is not None:
            headers["Retry-After"] = reply.retry_after
        if reply.retry_after_ms is not None:
            headers["retry-after-ms"] = str(reply.retry_after_ms)
        if reply.headers:
            headers.update(reply.headers)
        return self.error(
            reply.status, f"scripted error {reply.status}", headers=headers, body=reply.body
        )

    def check_auth(self, request: web.Request) -> web.Response | None:
        """401 without a bearer token, 400 for a wrong key (never echoed), else ``None``."""
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return self.error(
                401,
                "Missing or malformed Authorization header: expected 'Bearer <API key>'.",
            )
        if self._required_key is not None and token != self._required_key:
            # xAI answers a wrong key with 400; the key itself is never echoed.
            return self.error(
                400,
                "Incorrect API key provided. You can obtain an API key from https://console.x.ai.",
            )
        return None

    def check_rate(self) -> web.Response | None:
        """429 when ``rps_limit`` is reached in the last second, else count this request."""
        limit = self.settings.rps_limit
        if limit is None:
            return None
        now = time.monotonic()
        window = self._window
        while window and window[0] <= now - 1.0:
            window.popleft()
        if len(window) >= limit:
            wait = max(1, math.ceil(window[0] + 1.0 - now))
            return self.error(
                429,
                f"Rate limit exceeded: at most {limit:g} requests per second.",
                headers={"Retry-After": str(wait)},
            )
        window.append(now)
        return None

    async def read_json(self, request: web.Request) -> dict[str, Any] | web.Response:
        """The JSON object body, recorded for the ledger, or a 415 answer."""
        raw = await request.read()
        if request.content_type != "application/json":
            return self.error(
                415, f"Expected Content-Type application/json, got {request.content_type!r}."
            )
        if not raw:
            return self.error(415, "Expected a JSON body, got an empty body.")
        try:
            body = json.loads(raw)
        except ValueError:
            return self.error(415, "The body is not valid JSON.")
        if not isinstance(body, dict):
            return self.error(415, "The JSON body must be an object.")
        current_body.get()[0] = body
        return body

    def drop(self, request: web.Request) -> None:
        """Close the connection without an answer.

        Raises:
            Dropped: always, so the handler stops.
        """
        transport = request.transport
        if transport is not None:
            transport.abort()
        raise Dropped


def encode_answer(answer: Mapping[str, Any]) -> bytes:
    """``answer`` as JSON bytes, the same as ``json.dumps(answer).encode()``; the images of
    ``data[i].b64_json`` are joined in already encoded, not scanned by the encoder again: the
    fake's CPU, on the same cores as the client under test, stays small beside the client's."""
    original, data = answer, answer.get("data")
    spliced: list[bytes] = []
    if isinstance(data, list):
        items: list[Any] = []
        for item in data:
            value = item.get("b64_json") if isinstance(item, Mapping) else None
            encoded = image_b64_json(value)
            if encoded is not None:
                item = {**item, "b64_json": f"\x00{len(spliced)}"}
                spliced.append(encoded)
            items.append(item)
        if spliced:
            answer = {**answer, "data": items}
    payload = json.dumps(answer).encode()
    if not spliced:
        return payload
    markers = [json.dumps(f"\x00{index}").encode() for index in range(len(spliced))]
    if any(payload.count(marker) != 1 for marker in markers):  # another value looks the same
        return json.dumps(original).encode()
    pieces: list[bytes] = []
    for marker, encoded in zip(markers, spliced, strict=True):
        head, _, payload = payload.partition(marker)
        pieces += (head, encoded)
    pieces.append(payload)
    return b"".join(pieces)


async def send_json(
    request: web.Request, answer: dict[str, Any], *, headers: Mapping[str, str] | None = None
) -> web.StreamResponse:
    """Answer 200 JSON, streamed: web.Response warns about bodies over 1 MiB (b64 images)."""
    payload = encode_answer(answer)
    out = {"Content-Type": "application/json", "x-request-id": str(uuid.uuid4())}
    out.update(headers or {})
    response = web.StreamResponse(headers=out)
    response.content_length = len(payload)
    await response.prepare(request)
    await response.write(payload)
    await response.write_eof()
    return response


_PAD_CHUNK = 1 << 20


async def send_padded(
    request: web.Request, answer: dict[str, Any], size: int, *, gzip: bool, chunked: bool = False
) -> web.StreamResponse:
    """Answer 200 with ``answer`` padded to about ``size`` bytes of JSON (a ``"padding"`` list
    of 1 KiB strings of zeros), streamed a MiB at a time; gzip-compressed on the fly when
    ``gzip`` (a compression bomb: about 1 KB on the wire per MB)."""
    head = json.dumps(answer).encode()[:-1] + b', "padding": ['
    tail = b'"0"]}'
    unit = b'"' + b"0" * 1021 + b'",'
    padding = max(0, size - len(head) - len(tail)) // len(unit) * len(unit)
    headers = {"Content-Type": "application/json", "x-request-id": str(uuid.uuid4())}
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31) if gzip else None
    if compressor is not None:
        headers["Content-Encoding"] = "gzip"
    elif not chunked:
        headers["Content-Length"] = str(len(head) + padding + len(tail))
    response = web.StreamResponse(headers=headers)
    if compressor is not None or chunked:
        response.enable_chunked_encoding()
    await response.prepare(request)

    async def put(data: bytes) -> None:
        await response.write(compressor.compress(data) if compressor is not None else data)

    try:
        await put(head)
        block = unit * (_PAD_CHUNK // len(unit))
        while padding > 0:
            await put(block[: min(padding, _PAD_CHUNK)])
            padding -= _PAD_CHUNK
        await put(tail)
        if compressor is not None:
            await response.write(compressor.flush())
        await response.write_eof()
    except (ConnectionError, RuntimeError):
        pass  # the client stopped reading (the point of these answers)
    return response
