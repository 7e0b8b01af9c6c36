"""A local fake of the xAI image API, with switches that reproduce what a real client meets."""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextvars
import json
import math
import random
import time
import uuid
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

import attrs
from aiohttp import web

from ._imagegen import FORMATS, MIME_TYPES, image_b64, image_data, variant_count, variant_for

__all__ = [
    "DEFAULT_API_KEY",
    "FakeSettings",
    "FakeXAIServer",
    "Ledger",
    "RecordedRequest",
    "Reply",
]

DEFAULT_API_KEY = "xai-fake-key"

TICKS_PER_IMAGE = 200_000_000
TICKS_PER_INPUT_IMAGE = 20_000_000
MAX_PROMPT_CHARS = 10_000
MAX_INPUT_IMAGES = 5
MAX_INPUT_IMAGE_BYTES = 10 * 1024 * 1024
DEFAULT_MODEL = "grok-imagine-image"

_QUALITIES = frozenset({"low", "medium", "high", "auto"})
_RESPONSE_FORMATS = frozenset({"url", "b64_json"})
_RESOLUTIONS = frozenset({"1k", "1.5k", "2k"})
_ASPECT_RATIOS = frozenset(
    {"1:1", "3:4", "4:3", "9:16", "16:9", "2:3", "3:2", "9:19.5", "19.5:9", "9:20", "20:9"}
    | {"1:2", "2:1", "21:9", "5:2", "auto"}
)
_INPUT_MIME_TYPES = frozenset({"image/jpeg", "image/jpg", "image/png", "image/webp"})
_LOOPBACK_NAMES = frozenset({"localhost", "::1"})

# JSON type each request field must have; bool is checked apart because it is an int in Python.
_STR, _INT, _BOOL, _OBJ, _LIST = "string", "integer", "boolean", "object", "array"
_COMMON_FIELDS = {
    "prompt": _STR,
    "model": _STR,
    "n": _INT,
    "quality": _STR,
    "response_format": _STR,
    "aspect_ratio": _STR,
    "resolution": _STR,
    "user": _STR,
    "deferred": _BOOL,
    "storage_options": _OBJ,
    "output": _OBJ,
}
_EDIT_FIELDS = {**_COMMON_FIELDS, "image": _OBJ, "images": _LIST}

_ERROR_CODES = {
    400: "Client specified an invalid argument",
    401: "Unauthenticated",
    403: "Permission denied",
    404: "Not found",
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
_current_body: contextvars.ContextVar[list[Any]] = contextvars.ContextVar("xai_fake_body")


def _check_loopback(host: str) -> str:
    """Return the address to bind for ``host``, or raise ``ValueError`` if it is not loopback."""
    if host == "localhost":
        return "127.0.0.1"
    if host in _LOOPBACK_NAMES:
        return host
    parts = host.split(".")
    if len(parts) == 4 and parts[0] == "127" and all(p.isdigit() and int(p) < 256 for p in parts):
        return host
    raise ValueError(f"the fake server binds loopback addresses only, not {host!r}")


@attrs.define
class FakeSettings:
    """Every switch of the fake server; mutable, read on each request.

    Attributes:
        generation_latency: seconds each generate/edit waits before answering.
        download_latency: seconds each image download waits before the first byte.
        image_bytes: byte size of the images served (padding inside the container).
        image_format: ``"png"``, ``"jpeg"`` or ``"webp"``.
        rps_limit: accepted API requests allowed in any sliding 1 s window (no burst); one more
            gets 429 with ``Retry-After``. ``None`` for no limit.
        moderation: ``None``; ``"empty"`` answers 200 with ``data: []``; ``"blocked"`` answers
            images with neither ``url`` nor ``b64_json``.
        b64_prefix: ``b64_json`` values start with ``data:image/...;base64,``.
        url_ttl: seconds after generation when an image URL expires (``None``: never).
        url_single_use: an image URL expires after one complete download.
        expired_status: status of an expired URL (403 or 404).
        support_range: downloads honour ``Range: bytes=N-`` with 206.
        deferred_pending_polls: how many polls of a deferred request answer 202 pending.
        deferred_fail: deferred requests end as ``status: failed``.
        error_shape: ``"xai"`` (``{"code", "error"}``) or ``"openai"`` (``{"error": {...}}``).
        fault_seed: seed of the random faults, so runs repeat.
        generation_fault_rate: probability that a generate/edit answers 429 or 500 (half each,
            not billed).
        download_fault_rate: probability that a download answers 500 or is truncated.
        stall_seconds: default pause of ``Reply.stall()``.
        url_ext: force this extension in image URLs (e.g. a wrong one); ``None``: the format's.
        revised_prompt: include ``revised_prompt`` in images (else the key is absent).
    """

    generation_latency: float = 0.0
    download_latency: float = 0.0
    image_bytes: int = 4096
    image_format: str = attrs.field(default="png", validator=attrs.validators.in_(FORMATS))
    rps_limit: float | None = None
    moderation: str | None = attrs.field(
        default=None, validator=attrs.validators.in_((None, "empty", "blocked"))
    )
    b64_prefix: bool = False
    url_ttl: float | None = None
    url_single_use: bool = False
    expired_status: int = 404
    support_range: bool = True
    deferred_pending_polls: int = 1
    deferred_fail: bool = False
    error_shape: str = attrs.field(default="xai", validator=attrs.validators.in_(("xai", "openai")))
    fault_seed: int = 0
    generation_fault_rate: float = 0.0
    download_fault_rate: float = 0.0
    stall_seconds: float = 1.0
    url_ext: str | None = None
    revised_prompt: bool = True


def _redact_headers(headers: Mapping[str, str]) -> str:
    return repr(
        {k: ("<redacted>" if k.lower() == "authorization" else v) for k, v in headers.items()}
    )


def _short_body(body: Any) -> str:
    text = repr(body)
    return text if len(text) <= 200 else text[:197] + "..."


@attrs.frozen
class RecordedRequest:
    """One request the fake received.

    Attributes:
        method: ``"GET"``, ``"POST"``, ...
        path: URL path, e.g. ``"/v1/images/generations"`` or ``"/imgen/xai-tmp-imgen-....png"``.
        headers: request headers as received (names keep the client's spelling; look them up
            case-insensitively if unsure). Shown redacted in the repr.
        body: the parsed JSON body, or ``None`` (no body, or not JSON).
        status: the status answered; 0 when the connection was dropped without an answer.
    """

    method: str
    path: str
    headers: dict[str, str] = attrs.field(repr=_redact_headers)
    body: Any = attrs.field(repr=_short_body)
    status: int

    def header(self, name: str) -> str | None:
        """Return a header's value, looked up case-insensitively, or ``None``."""
        wanted = name.lower()
        for key, value in self.headers.items():
            if key.lower() == wanted:
                return value
        return None


@attrs.define
class Ledger:
    """What happened on the fake server, for tests to assert on.

    Attributes:
        requests: every request (API and downloads) in the order they finished.
        images_billed: images charged, including answers that were dropped or hung.
        images_delivered: images (with ``url`` or ``b64_json``) in answers actually sent.
        images_downloaded: complete successful image downloads (a 206 that reaches the end counts).
        downloads_with_auth: downloads that carried an ``Authorization`` header (a key leak).
        rate_limited: 429 answers of any origin (limit, script, random fault).
        billed_prompts: images billed per prompt.
        cost_in_usd_ticks: total billed, as the API counts it.
        requests_started: requests received so far (counted on arrival, unlike ``requests``).
        peak_api_concurrency: most API requests handled at the same time.
        peak_download_concurrency: most downloads served at the same time.
    """

    requests: list[RecordedRequest] = attrs.Factory(list)
    images_billed: int = 0
    images_delivered: int = 0
    images_downloaded: int = 0
    downloads_with_auth: int = 0
    rate_limited: int = 0
    billed_prompts: collections.Counter[str] = attrs.Factory(collections.Counter)
    cost_in_usd_ticks: int = 0
    requests_started: int = 0
    peak_api_concurrency: int = 0
    peak_download_concurrency: int = 0

    def api_requests(self) -> list[RecordedRequest]:
        """The requests to the API host (paths under ``/v1``)."""
        return [r for r in self.requests if r.path.startswith("/v1/")]

    def downloads(self) -> list[RecordedRequest]:
        """The requests to the image host (paths under ``/imgen/``)."""
        return [r for r in self.requests if r.path.startswith("/imgen/")]

    def clear(self) -> None:
        """Empty the ledger in place (references to it stay valid)."""
        self.requests.clear()
        self.images_billed = 0
        self.images_delivered = 0
        self.images_downloaded = 0
        self.downloads_with_auth = 0
        self.rate_limited = 0
        self.billed_prompts.clear()
        self.cost_in_usd_ticks = 0
        self.requests_started = 0
        self.peak_api_concurrency = 0
        self.peak_download_concurrency = 0


@attrs.frozen
class Reply:
    """A scripted answer for the next API POST (``enqueue``) or download (``enqueue_download``).

    Build one with the class methods: ``Reply.error(...)``, ``Reply.drop()``, ``Reply.hang(s)``,
    ``Reply.ok()`` for API requests; ``Reply.error(...)``, ``Reply.truncate()``, ``Reply.stall()``,
    ``Reply.drop()``, ``Reply.ok()`` for downloads.
    """

    kind: str
    status: int = 200
    retry_after: str | None = None
    retry_after_ms: int | None = None
    body: dict[str, Any] | None = None
    headers: dict[str, str] | None = None
    seconds: float | None = None
    fraction: float = 0.5
    abort: bool = False

    @classmethod
    def error(
        cls,
        status: int,
        *,
        retry_after: str | float | None = None,
        retry_after_ms: int | None = None,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """Answer ``status`` with an error body (not billed).

        Args:
            retry_after: ``Retry-After`` header value: seconds (``"2"``) or an HTTP date; a
                number is sent as integer seconds.
            retry_after_ms: ``retry-after-ms`` header value.
            body: replaces the default error body (in the configured error shape).
            headers: extra response headers.
        """
        if isinstance(retry_after, (int, float)):
            retry_after = str(math.ceil(retry_after))
        return cls(
            "error",
            status=status,
            retry_after=retry_after,
            retry_after_ms=retry_after_ms,
            body=body,
            headers=dict(headers) if headers else None,
        )

    @classmethod
    def drop(cls) -> Reply:
        """API: bill the images, then close the connection without an answer. Download: the
        same, nothing counted.

        aiohttp's client resends an idempotent request (a download GET) once by itself when the
        connection drops before any answer: enqueue two drops to make a download fail.
        """
        return cls("drop")

    @classmethod
    def hang(cls, seconds: float) -> Reply:
        """API: bill, then wait ``seconds`` before answering normally (to provoke timeouts)."""
        return cls("hang", seconds=seconds)

    @classmethod
    def ok(cls) -> Reply:
        """Pass the request through normally (keeps a place in the queue)."""
        return cls("ok")

    @classmethod
    def truncate(cls, fraction: float = 0.5) -> Reply:
        """Download: announce the full Content-Length, send ``fraction`` of it, then disconnect."""
        return cls("truncate", fraction=fraction)

    @classmethod
    def stall(
        cls, fraction: float = 0.5, seconds: float | None = None, *, abort: bool = False
    ) -> Reply:
        """Download: send ``fraction`` of the body, pause ``seconds`` (default
        ``settings.stall_seconds``), then send the rest, or disconnect when ``abort``."""
        return cls("stall", fraction=fraction, seconds=seconds, abort=abort)


_API_KINDS = frozenset({"error", "drop", "hang", "ok"})
_DOWNLOAD_KINDS = frozenset({"error", "truncate", "stall", "drop", "ok"})


@attrs.define
class _Image:
    fmt: str
    size: int
    variant: int
    created: float
    used: bool = False


@attrs.define
class _Deferred:
    images: list[dict[str, Any]]
    usage: dict[str, Any]
    model: str
    created: int
    polls: int = 0
    delivered: bool = False


class _Dropped(Exception):
    """Internal: the handler closed the connection on purpose; nothing must be answered."""


class FakeXAIServer:
    """A local fake of the xAI image API on 127.0.0.1 (see ``docs/architecture.md``).

    ::

        async with FakeXAIServer() as server:
            client = AsyncClient(api_key=server.api_key, base_url=server.base_url)

    Args:
        api_key: the key the server requires (other keys get 400, as xAI answers a wrong key).
            ``None``: any non-empty bearer token is accepted, and ``api_key`` is a default one.
        host: loopback address to bind (``127.x.x.x``, ``::1`` or ``localhost``).
        port: TCP port; 0 picks a free one.
        image_bytes: byte size of served images.
        image_format: ``"png"``, ``"jpeg"`` or ``"webp"``.
        **settings: any other ``FakeSettings`` field.

    Raises:
        ValueError: ``host`` is not a loopback address.
        TypeError: an unknown setting was given.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        image_bytes: int = 4096,
        image_format: str = "png",
        **settings: Any,
    ) -> None:
        self._bind_host = _check_loopback(host)
        self._port = port
        self._required_key = api_key
        self.api_key: str = api_key if api_key is not None else DEFAULT_API_KEY
        self._initial = FakeSettings(image_bytes=image_bytes, image_format=image_format, **settings)
        self.settings: FakeSettings = attrs.evolve(self._initial)
        self.ledger = Ledger()
        self._queue: collections.deque[Reply] = collections.deque()
        self._download_queue: collections.deque[Reply] = collections.deque()
        self._window: collections.deque[float] = collections.deque()
        self._rng = random.Random(self.settings.fault_seed)
        self._rng_seed = self.settings.fault_seed
        self._images: dict[str, _Image] = {}
        self._deferred: dict[str, _Deferred] = {}
        self._runner: web.AppRunner | None = None
        self._api_active = 0
        self._downloads_active = 0
        self._waiters: list[tuple[Callable[[Ledger], bool], asyncio.Future[None]]] = []
        self._origin = ""

    def __repr__(self) -> str:
        state = self._origin or "not started"
        return f"<FakeXAIServer {state}>"

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The API base URL, ``http://127.0.0.1:PORT/v1``.

        Raises:
            RuntimeError: the server is not started.
        """
        if not self._origin:
            raise RuntimeError("FakeXAIServer is not started")
        return self._origin + "/v1"

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:PORT``: the root of both the API and the image host paths."""
        if not self._origin:
            raise RuntimeError("FakeXAIServer is not started")
        return self._origin

    @property
    def port(self) -> int:
        """The bound TCP port (after ``start()``)."""
        return int(self.origin.rsplit(":", 1)[1])

    async def start(self) -> None:
        """Bind and start serving.

        Raises:
            RuntimeError: already started.
            OSError: the port could not be bound.
        """
        if self._runner is not None:
            raise RuntimeError("FakeXAIServer is already started")
        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[self._record])
        app.router.add_post("/v1/images/generations", self._generations)
        app.router.add_post("/v1/images/edits", self._edits)
        app.router.add_get("/v1/images/{request_id}", self._poll, allow_head=False)
        app.router.add_get("/imgen/{name}", self._download, allow_head=False)
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5
        )
        await runner.setup()
        site = web.TCPSite(runner, self._bind_host, self._port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        port = runner.addresses[0][1]
        host = f"[{self._bind_host}]" if ":" in self._bind_host else self._bind_host
        self._origin = f"http://{host}:{port}"

    async def stop(self) -> None:
        """Stop serving; idempotent. Open connections are closed."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> FakeXAIServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # --- switches -----------------------------------------------------------------------------

    def enqueue(self, *replies: Reply) -> None:
        """Script the answers of the next API POSTs (generations and edits), first in first out.

        Raises:
            ValueError: a reply kind that only applies to downloads.
        """
        for reply in replies:
            if reply.kind not in _API_KINDS:
                raise ValueError(f"Reply.{reply.kind}() is for downloads: use enqueue_download()")
        self._queue.extend(replies)

    def enqueue_download(self, *replies: Reply) -> None:
        """Script the answers of the next image downloads, first in first out.

        Raises:
            ValueError: a reply kind that only applies to API requests.
        """
        for reply in replies:
            if reply.kind not in _DOWNLOAD_KINDS:
                raise ValueError(f"Reply.{reply.kind}() is for API requests: use enqueue()")
        self._download_queue.extend(replies)

    def reset(self) -> None:
        """Restore the constructor's settings (in place), empty both queues and the ledger."""
        for field in attrs.fields(FakeSettings):
            setattr(self.settings, field.name, getattr(self._initial, field.name))
        self._queue.clear()
        self._download_queue.clear()
        self._window.clear()
        self.ledger.clear()
        self._rng = random.Random(self.settings.fault_seed)
        self._rng_seed = self.settings.fault_seed

    async def wait_for(self, predicate: Callable[[Ledger], bool], *, timeout: float = 10.0) -> None:
        """Wait until ``predicate(server.ledger)`` holds, checked whenever the ledger changes.

        Lets a test act at a precise point without sleeping, e.g. cancel a client once its
        request is billed during ``Reply.hang``:
        ``await server.wait_for(lambda ledger: ledger.images_billed == 1)``.

        Raises:
            asyncio.TimeoutError: the predicate did not hold within ``timeout`` seconds.
        """
        if predicate(self.ledger):
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (predicate, future)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(future, timeout)
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)

    async def wait_for_requests(self, count: int, *, timeout: float = 10.0) -> None:
        """Wait until ``count`` requests (API or downloads) have arrived since the last reset.

        Raises:
            asyncio.TimeoutError: fewer requests arrived within ``timeout`` seconds.
        """
        await self.wait_for(lambda ledger: ledger.requests_started >= count, timeout=timeout)

    def warm(self) -> None:
        """Build every image variant for the current format and size now, not on first use.

        For benchmarks: the first request of each variant otherwise pays for building it.
        """
        fmt, size = self.settings.image_format, self.settings.image_bytes
        for variant in range(variant_count(size)):
            image_data(fmt, size, variant)

    def _wake_waiters(self) -> None:
        for predicate, future in self._waiters:
            if not future.done() and predicate(self.ledger):
                future.set_result(None)

    def image_url(self, image_id: str, fmt: str | None = None) -> str:
        """The download URL of an image id (as it appears in answers)."""
        ext = self.settings.url_ext or fmt or self.settings.image_format
        return f"{self.origin}/imgen/{image_id}.{ext}"

    # --- plumbing -----------------------------------------------------------------------------

    @web.middleware
    async def _record(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        status = 0
        holder: list[Any] = [None]
        _current_body.set(holder)
        ledger = self.ledger
        ledger.requests_started += 1
        is_api = request.path.startswith("/v1/")
        if is_api:
            self._api_active += 1
            ledger.peak_api_concurrency = max(ledger.peak_api_concurrency, self._api_active)
        else:
            self._downloads_active += 1
            ledger.peak_download_concurrency = max(
                ledger.peak_download_concurrency, self._downloads_active
            )
        self._wake_waiters()
        try:
            response: web.StreamResponse = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            if is_api and exc.status in (404, 405):
                # Unknown API routes answer 404 in the API's error shape, as the real service does
                # (405 too: POST /v1/images/variations only collides with the deferred GET route).
                error = self._error(404, f"No route for {request.method} {request.path}.")
                status = error.status
                return error
            status = exc.status
            raise
        except _Dropped:
            # Returning an unprepared response on a closed transport makes aiohttp give up quietly.
            return web.Response(status=200)
        finally:
            if is_api:
                self._api_active -= 1
            else:
                self._downloads_active -= 1
            self.ledger.requests.append(
                RecordedRequest(
                    request.method,
                    request.path,
                    dict(request.headers),
                    holder[0],
                    status,
                )
            )
            self._wake_waiters()

    def _random(self) -> float:
        if self.settings.fault_seed != self._rng_seed:
            self._rng = random.Random(self.settings.fault_seed)
            self._rng_seed = self.settings.fault_seed
        return self._rng.random()

    def _error(
        self,
        status: int,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> web.Response:
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

    def _scripted_error(self, reply: Reply) -> web.Response:
        headers: dict[str, str] = {}
        if reply.retry_after is not None:
            headers["Retry-After"] = reply.retry_after
        if reply.retry_after_ms is not None:
            headers["retry-after-ms"] = str(reply.retry_after_ms)
        if reply.headers:
            headers.update(reply.headers)
        return self._error(
            reply.status, f"scripted error {reply.status}", headers=headers, body=reply.body
        )

    def _check_auth(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return self._error(
                401,
                "Missing or malformed Authorization header: expected 'Bearer <API key>'.",
            )
        if self._required_key is not None and token != self._required_key:
            # xAI answers a wrong key with 400; the key itself is never echoed.
            return self._error(
                400,
                "Incorrect API key provided. You can obtain an API key from https://console.x.ai.",
            )
        return None

    def _check_rate(self) -> web.Response | None:
        limit = self.settings.rps_limit
        if limit is None:
            return None
        now = time.monotonic()
        window = self._window
        while window and window[0] <= now - 1.0:
            window.popleft()
        if len(window) >= limit:
            wait = max(1, math.ceil(window[0] + 1.0 - now))
            return self._error(
                429,
                f"Rate limit exceeded: at most {limit:g} requests per second.",
                headers={"Retry-After": str(wait)},
            )
        window.append(now)
        return None

    async def _read_json(self, request: web.Request) -> dict[str, Any] | web.Response:
        raw = await request.read()
        if request.content_type != "application/json":
            return self._error(
                415, f"Expected Content-Type application/json, got {request.content_type!r}."
            )
        if not raw:
            return self._error(415, "Expected a JSON body, got an empty body.")
        try:
            body = json.loads(raw)
        except ValueError:
            return self._error(415, "The body is not valid JSON.")
        if not isinstance(body, dict):
            return self._error(415, "The JSON body must be an object.")
        _current_body.get()[0] = body
        return body

    # --- validation ---------------------------------------------------------------------------

    def _validate(self, body: dict[str, Any], *, edit: bool) -> web.Response | None:
        fields = _EDIT_FIELDS if edit else _COMMON_FIELDS
        for name, value in body.items():
            wanted = fields.get(name)
            if wanted is None:
                return self._error(
                    422, f"Failed to deserialize the JSON body: unknown field `{name}`."
                )
            if value is None and name != "prompt":
                continue
            if not _has_type(value, wanted):
                return self._error(
                    422,
                    f"Failed to deserialize the JSON body: field `{name}`: invalid type, "
                    f"expected {wanted}.",
                )
        if "prompt" not in body:
            return self._error(422, "Failed to deserialize the JSON body: missing field `prompt`.")
        prompt = body["prompt"]
        if not prompt:
            return self._error(400, "prompt: must not be empty.")
        if len(prompt) > MAX_PROMPT_CHARS:
            return self._error(400, f"prompt: at most {MAX_PROMPT_CHARS} characters.")
        n = body.get("n")
        if n is not None and not 1 <= n <= 10:
            return self._error(400, "n: must be between 1 and 10.")
        for name, allowed in (
            ("quality", _QUALITIES),
            ("response_format", _RESPONSE_FORMATS),
            ("aspect_ratio", _ASPECT_RATIOS),
            ("resolution", _RESOLUTIONS),
        ):
            value = body.get(name)
            if value is not None and value not in allowed:
                return self._error(
                    400, f"{name}: {value!r} is not one of {', '.join(sorted(allowed))}."
                )
        if body.get("deferred") and body.get("response_format") == "b64_json":
            return self._error(400, "deferred requests support response_format url only.")
        if edit:
            return self._validate_inputs(body)
        return None

    def _validate_inputs(self, body: dict[str, Any]) -> web.Response | None:
        image = body.get("image")
        images = body.get("images")
        if image is not None and images is not None:
            return self._error(400, "Give either image or images, not both.")
        if image is None and images is None:
            return self._error(400, "An edit needs an input image: image or images.")
        items = [image] if image is not None else images
        assert isinstance(items, list)
        if not items:
            return self._error(400, "images: must not be empty.")
        if len(items) > MAX_INPUT_IMAGES:
            return self._error(400, f"images: at most {MAX_INPUT_IMAGES} input images.")
        for index, item in enumerate(items):
            where = "image" if image is not None else f"images[{index}]"
            if not isinstance(item, dict):
                return self._error(422, f"{where}: invalid type, expected object.")
            unknown = set(item) - {"url", "file_id", "detail"}
            if unknown:
                return self._error(422, f"{where}: unknown field `{sorted(unknown)[0]}`.")
            present = [k for k in ("url", "file_id") if item.get(k) is not None]
            for key in present:
                if not isinstance(item[key], str):
                    return self._error(422, f"{where}.{key}: invalid type, expected string.")
            if len(present) != 1:
                return self._error(400, f"{where}: give exactly one of url or file_id.")
            if present[0] == "url":
                problem = _check_image_url(item["url"])
                if problem:
                    return self._error(400, f"{where}.url: {problem}")
        return None

    # --- API handlers -------------------------------------------------------------------------

    async def _generations(self, request: web.Request) -> web.StreamResponse:
        return await self._create(request, edit=False)

    async def _edits(self, request: web.Request) -> web.StreamResponse:
        return await self._create(request, edit=True)

    async def _create(self, request: web.Request, *, edit: bool) -> web.StreamResponse:
        refusal = self._check_auth(request) or self._check_rate()
        if refusal is not None:
            return refusal
        script = self._queue.popleft() if self._queue else None
        # The body is read even for a scripted error, so the ledger shows what was sent.
        parsed = await self._read_json(request)
        if script is not None and script.kind == "error":
            return self._scripted_error(script)
        if isinstance(parsed, web.Response):
            return parsed
        body = parsed
        invalid = self._validate(body, edit=edit)
        if invalid is not None:
            return invalid
        settings = self.settings
        if settings.generation_fault_rate and self._random() < settings.generation_fault_rate:
            if self._random() < 0.5:
                return self._error(429, "Random fault: rate limited.")
            return self._error(500, "Random fault: internal error.")
        if settings.generation_latency > 0:
            await asyncio.sleep(settings.generation_latency)

        n: int = body.get("n") or 1
        prompt: str = body["prompt"]
        inputs = (
            (1 if body.get("image") is not None else len(body.get("images") or ())) if edit else 0
        )
        ticks = TICKS_PER_IMAGE * n + TICKS_PER_INPUT_IMAGE * inputs
        self._bill(prompt, n, ticks)
        usage = {"cost_in_usd_ticks": ticks}
        model = body.get("model") or DEFAULT_MODEL

        if script is not None and script.kind == "drop":
            self._drop(request)
        if script is not None and script.kind == "hang":
            await asyncio.sleep(script.seconds or 0.0)

        if body.get("deferred"):
            request_id = str(uuid.uuid4())
            self._deferred[request_id] = _Deferred(
                images=self._make_images(prompt, n, "url"),
                usage=usage,
                model=model,
                created=int(time.time()),
            )
            return web.json_response(
                {"request_id": request_id}, headers={"x-request-id": str(uuid.uuid4())}
            )

        images = self._make_images(prompt, n, body.get("response_format") or "url")
        self.ledger.images_delivered += _deliverable(images)
        answer = {"data": images, "usage": usage, "created": int(time.time()), "model": model}
        return await _send_json(request, answer)

    def _bill(self, prompt: str, n: int, ticks: int) -> None:
        ledger = self.ledger
        ledger.images_billed += n
        ledger.billed_prompts[prompt] += n
        ledger.cost_in_usd_ticks += ticks
        self._wake_waiters()

    def _drop(self, request: web.Request) -> None:
        transport = request.transport
        if transport is not None:
            transport.abort()
        raise _Dropped

    def _make_images(self, prompt: str, n: int, response_format: str) -> list[dict[str, Any]]:
        settings = self.settings
        if settings.moderation == "empty":
            return []
        fmt = settings.image_format
        size = settings.image_bytes
        mime = MIME_TYPES[fmt]
        images: list[dict[str, Any]] = []
        for index in range(n):
            item: dict[str, Any]
            if settings.moderation == "blocked":
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
                    self._images[image_id] = _Image(fmt, size, variant, time.monotonic())
                    item = {"url": self.image_url(image_id, fmt), "b64_json": None}
            item["mime_type"] = mime
            if settings.revised_prompt:
                item["revised_prompt"] = f"A detailed, vivid rendering of: {prompt}"
            images.append(item)
        return images

    async def _poll(self, request: web.Request) -> web.StreamResponse:
        refusal = self._check_auth(request) or self._check_rate()
        if refusal is not None:
            return refusal
        request_id = request.match_info["request_id"]
        job = self._deferred.get(request_id)
        if job is None:
            return self._error(404, f"Deferred request {request_id!r} not found or expired.")
        headers = {"x-request-id": str(uuid.uuid4())}
        job.polls += 1
        if job.polls <= self.settings.deferred_pending_polls:
            return web.json_response({"status": "pending"}, status=202, headers=headers)
        if self.settings.deferred_fail:
            return web.json_response(
                {"status": "failed", "error": "Image generation failed."}, headers=headers
            )
        if not job.delivered:
            job.delivered = True
            self.ledger.images_delivered += _deliverable(job.images)
        answer = {
            "status": "done",
            "data": job.images,
            "usage": job.usage,
            "created": job.created,
            "model": job.model,
        }
        return web.json_response(answer, headers=headers)

    # --- image host ---------------------------------------------------------------------------

    async def _download(self, request: web.Request) -> web.StreamResponse:
        if "Authorization" in request.headers:
            self.ledger.downloads_with_auth += 1
        image_id = request.match_info["name"].split(".", 1)[0]
        image = self._images.get(image_id)
        if image is None:
            return web.Response(status=404, text="Not found")
        settings = self.settings
        expired = image.used and settings.url_single_use
        if settings.url_ttl is not None and time.monotonic() - image.created >= settings.url_ttl:
            expired = True
        if expired:
            return web.Response(status=settings.expired_status, text="Expired")
        if settings.download_latency > 0:
            await asyncio.sleep(settings.download_latency)
        script = self._download_queue.popleft() if self._download_queue else None
        fault_rate = settings.download_fault_rate
        if script is None and fault_rate and self._random() < fault_rate:
            script = Reply.error(500) if self._random() < 0.5 else Reply.truncate()
        if script is not None and script.kind == "error":
            headers = dict(script.headers or {})
            if script.retry_after is not None:
                headers["Retry-After"] = script.retry_after
            return web.Response(status=script.status, text="Scripted error", headers=headers)
        if script is not None and script.kind == "drop":
            self._drop(request)

        data = image_data(image.fmt, image.size, image.variant)
        start = 0
        status = 200
        headers = {"Content-Type": MIME_TYPES[image.fmt]}
        range_header = request.headers.get("Range")
        if settings.support_range:
            headers["Accept-Ranges"] = "bytes"
            if range_header:
                start = _range_start(range_header, len(data))
                if start < 0:
                    return web.Response(
                        status=416, headers={"Content-Range": f"bytes */{len(data)}"}
                    )
                if start > 0:
                    status = 206
                    headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = memoryview(data)[start:]

        # A StreamResponse even for the plain case: web.Response warns about bodies over 1 MiB.
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = len(body)
        await response.prepare(request)
        if script is None or script.kind == "ok":
            await response.write(body)
        else:
            await self._write_faulty(request, response, script, body)
        await response.write_eof()
        image.used = True
        self.ledger.images_downloaded += 1
        return response

    async def _write_faulty(
        self,
        request: web.Request,
        response: web.StreamResponse,
        script: Reply,
        body: memoryview,
    ) -> None:
        cut = int(len(body) * min(max(script.fraction, 0.0), 1.0))
        if script.kind == "truncate":
            cut = min(cut, len(body) - 1)
        await response.write(body[:cut])
        if script.kind == "stall":
            seconds = script.seconds if script.seconds is not None else self.settings.stall_seconds
            await asyncio.sleep(seconds)
        if script.kind == "truncate" or script.abort:
            # close(), not abort(): the partial body already written must still reach the client.
            transport = request.transport
            if transport is not None:
                transport.close()
            raise _Dropped
        await response.write(body[cut:])


async def _send_json(request: web.Request, answer: dict[str, Any]) -> web.StreamResponse:
    """Answer 200 JSON, streamed: web.Response warns about bodies over 1 MiB (b64 images)."""
    payload = json.dumps(answer).encode()
    response = web.StreamResponse(
        headers={"Content-Type": "application/json", "x-request-id": str(uuid.uuid4())}
    )
    response.content_length = len(payload)
    await response.prepare(request)
    await response.write(payload)
    await response.write_eof()
    return response


def _has_type(value: Any, wanted: str) -> bool:
    if wanted == _STR:
        return isinstance(value, str)
    if wanted == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if wanted == _BOOL:
        return isinstance(value, bool)
    if wanted == _OBJ:
        return isinstance(value, dict)
    return isinstance(value, list)


def _deliverable(images: list[dict[str, Any]]) -> int:
    return sum(1 for i in images if i.get("url") or i.get("b64_json"))


def _check_image_url(url: str) -> str | None:
    """Why an input image URL is refused, or ``None``. Remote http(s) URLs are not fetched."""
    if url.startswith(("http://", "https://")):
        return None
    if not url.startswith("data:"):
        return "must be an http(s) URL or a data URI."
    header, sep, payload = url.partition(",")
    if not sep or not header.endswith(";base64"):
        return "data URI must be base64-encoded: data:image/png;base64,..."
    mime = header[len("data:") : -len(";base64")].lower()
    if mime not in _INPUT_MIME_TYPES:
        return f"unsupported image type {mime!r}: use JPEG, PNG or WebP."
    if len(payload) // 4 * 3 > MAX_INPUT_IMAGE_BYTES + 3:
        return f"image too large: at most {MAX_INPUT_IMAGE_BYTES} bytes."
    try:
        decoded = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return "data URI payload is not valid base64."
    if len(decoded) > MAX_INPUT_IMAGE_BYTES:
        return f"image too large: at most {MAX_INPUT_IMAGE_BYTES} bytes."
    return None


def _range_start(header: str, length: int) -> int:
    """Start offset of a ``bytes=N-`` range; 0 for a form we ignore; -1 when unsatisfiable."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return 0
    first, _, _last = spec.strip().partition("-")
    if not first.isdigit():
        return 0
    start = int(first)
    return -1 if start >= length else start
