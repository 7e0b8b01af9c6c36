"""``AsyncClient``: session ownership, authentication, and the one API request path.

Every API call goes through :meth:`AsyncClient._request`, which applies the client-wide limits,
retries what is provably safe to retry, maps transport failures and error statuses onto the
exception tree of ``_errors.py`` and logs one DEBUG line per exchange and per retry decision.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
from collections.abc import Callable, Mapping
from types import SimpleNamespace, TracebackType
from typing import TYPE_CHECKING, Any, Literal

import aiohttp
import attrs
from yarl import URL

from ._b64stream import B64ResponseScanner
from ._batches import Batches, Files
from ._download import DownloadOptions, Transfers
from ._errors import (
    APIConnectionError,
    APIError,
    APIResponseError,
    APIStatusError,
    APITimeoutError,
    ClientClosedError,
    ConfigurationError,
    OutcomeUnknownError,
    RateLimitError,
    ValidationError,
    status_error_class,
)
from ._images import Images
from ._progress import notify
from ._ratelimit import RateLimiter
from ._retry import RetryPolicy, parse_retry_after, sleep

if TYPE_CHECKING:
    from ._batch import BatchRun, Source
    from ._batch_remote import RemoteBatchRun
    from ._download import OnExists
    from ._progress import ProgressEvent

__all__ = ["DEFAULT_BASE_URL", "AsyncClient", "Timeout"]

DEFAULT_BASE_URL = "https://api.x.ai/v1"
"""Used when neither ``base_url=`` nor ``XAI_BASE_URL`` is set."""

_VERSION = "0.1.0"
_logger = logging.getLogger("xai_images")
_READ_CHUNK = 256 * 1024
_MAX_ERROR_BODY = 64 * 1024
# Skeletons (the JSON without base64 payloads) above this are parsed off the event loop.
_LARGE_JSON = 512 * 1024
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def _positive_or_none(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"Timeout.{attribute.name} must be a positive finite number or None")


@attrs.frozen
class Timeout:
    """Time limits of one API request attempt, in seconds (``None``: no limit).

    Attributes:
        request: the whole exchange, generation included (image generation can take minutes),
            from connecting to the last byte of the answer. Default 600.
        connect: opening the TCP/TLS connection. Default 10. A connect timeout is retried
            (nothing was sent); a request timeout after sending raises ``OutcomeUnknownError``.
    """

    request: float | None = attrs.field(default=600.0, validator=_positive_or_none)
    connect: float | None = attrs.field(default=10.0, validator=_positive_or_none)


def _coerce_timeout(value: Timeout | float | None, base: Timeout) -> Timeout:
    if value is None:
        return base
    if isinstance(value, Timeout):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"timeout must be a Timeout, a number of seconds or None, not {value!r}")
    return attrs.evolve(base, request=float(value))


def _positive(value: object) -> bool:
    """A finite real number above 0 (``bool``, NaN and infinity are not)."""
    return (
        not isinstance(value, bool)
        and isinstance(value, (int, float))
        and math.isfinite(value)
        and value > 0
    )


def _int_at_least(value: object, minimum: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= minimum


def _bad_argument(name: str, value: object, limit: str) -> ConfigurationError:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return ConfigurationError(f"{name} must be {limit}, got {shown}")


class _Secret:
    """Holds the API key so that no repr, traceback local dump or log can show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def redact(self, text: str) -> str:
        return text.replace(self._value, "***") if self._value else text

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__


class _SendState:
    """Per-attempt flag set by a trace hook once the request headers went out."""

    __slots__ = ("headers_sent",)

    def __init__(self) -> None:
        self.headers_sent = False


async def _on_headers_sent(
    _session: aiohttp.ClientSession, ctx: SimpleNamespace, _params: object
) -> None:
    state = ctx.trace_request_ctx
    if isinstance(state, _SendState):
        state.headers_sent = True


@attrs.frozen
class _Answer:
    status: int
    headers: Mapping[str, str]
    request_id: str | None
    body: Any
    payloads: list[bytes]


def _error_message(body: Any, text: str) -> tuple[str | None, str | None]:
    """The server's message and code from either error-body shape."""
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping):  # OpenAI style
            message = error.get("message")
            code = error.get("code") or error.get("type")
            return (str(message) if message else None, str(code) if code else None)
        code = body.get("code")
        if isinstance(error, str):  # xAI style
            return error, str(code) if code else None
        message = body.get("message") or body.get("detail")
        if message:
            return str(message), str(code) if code else None
    text = text.strip()
    return (text[:500] or None), None


class AsyncClient:
    """Async client for the xAI image API. Use it as ``async with AsyncClient() as client:``.

    Args:
        api_key: the key; else ``XAI_API_KEY``. Never shown in reprs, errors or logs.
        base_url: the API root; else ``XAI_BASE_URL``; else ``https://api.x.ai/v1``.
        timeout: per-attempt limits: a :class:`Timeout`, or a number of seconds for
            ``Timeout.request``. Default ``Timeout(request=600, connect=10)``. Calls may override.
        max_retries: retries after the first attempt (default 2, so 3 attempts). Calls may
            override.
        retry: the full :class:`RetryPolicy` (``max_retries`` then sets its attempts).
        session: an ``aiohttp.ClientSession`` to use instead of creating one. The client never
            closes a session it did not create. It must not carry an ``Authorization`` default
            header (it would be sent to the image host too).
        max_connections: connection pool size of the session the client creates (0: no limit).
        rate_limit: requests per second for API requests of this client (``None``: unlimited;
            the live API allows about 5). Shared by every call, spaced with no burst.
        max_concurrent_requests: API requests in flight at once (``None``: unlimited).
        download: options for saving and streaming images (``DownloadOptions``).

    Raises:
        ConfigurationError: no API key anywhere, a key with characters an HTTP header cannot
            carry (control or non-latin-1 characters), a session with an ``Authorization`` default
            header, or any argument of the wrong type or out of range (the message names the
            argument and what it must be).
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: Timeout | float | None = None,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
        session: aiohttp.ClientSession | None = None,
        max_connections: int = 512,
        rate_limit: float | None = None,
        max_concurrent_requests: int | None = None,
        download: DownloadOptions | None = None,
    ) -> None:
        if api_key is not None and not isinstance(api_key, str):
            # The value is not shown: it may be the key in the wrong type.
            raise ConfigurationError(f"api_key must be a str, not {type(api_key).__name__}")
        key = api_key if api_key is not None else os.environ.get("XAI_API_KEY")
        if not key or not key.strip():
            raise ConfigurationError(
                "no API key: pass api_key= to AsyncClient or set the XAI_API_KEY environment "
                "variable"
            )
        key = key.strip()
        if any(ord(char) < 0x20 or ord(char) == 0x7F or ord(char) > 0xFF for char in key):
            # Caught here, not as a confusing error at the first request; the key (or where the
            # bad character is) is not shown.
            raise ConfigurationError(
                "the API key contains characters not allowed in an HTTP header (control "
                "characters such as a line break, or non-latin-1 characters); check how it was "
                "copied or set"
            )
        self._key = _Secret(key)
        if base_url is not None and not isinstance(base_url, str):
            raise _bad_argument("base_url", base_url, f"an http(s) URL such as {DEFAULT_BASE_URL}")
        self._base_url = self._check_base_url(
            base_url or os.environ.get("XAI_BASE_URL") or DEFAULT_BASE_URL
        )
        if timeout is not None and not isinstance(timeout, Timeout) and not _positive(timeout):
            raise _bad_argument(
                "timeout", timeout, "a positive number of seconds, a Timeout or None"
            )
        self._timeout = _coerce_timeout(timeout, Timeout())
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise _bad_argument("retry", retry, "a RetryPolicy or None")
        try:
            self._retry = (retry or RetryPolicy()).with_attempts(
                2 if max_retries is None and retry is None else max_retries
            )
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise _bad_argument("session", session, "an aiohttp.ClientSession or None")
        if session is not None and "Authorization" in session.headers:
            raise ConfigurationError(
                "the session has a default Authorization header; aiohttp would send it to the "
                "image host as well. Remove it: the client adds the key to API requests itself"
            )
        if not _int_at_least(max_connections, 0):
            raise _bad_argument("max_connections", max_connections, "an int >= 0 (0: no limit)")
        if rate_limit is not None and not (_positive(rate_limit) and math.isfinite(rate_limit)):
            raise _bad_argument(
                "rate_limit", rate_limit, "a positive finite number of requests per second or None"
            )
        if max_concurrent_requests is not None and not _int_at_least(max_concurrent_requests, 1):
            raise _bad_argument(
                "max_concurrent_requests", max_concurrent_requests, "an int >= 1 or None"
            )
        if download is not None and not isinstance(download, DownloadOptions):
            raise _bad_argument("download", download, "a DownloadOptions or None")
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = session
        self._owns_session = session is None
        self._closed = False
        self._limiter = RateLimiter(rate_limit) if rate_limit is not None else None
        self._semaphore = (
            asyncio.Semaphore(max_concurrent_requests) if max_concurrent_requests else None
        )
        self._transfers = Transfers(self._require_session, download or DownloadOptions())
        self.images = Images(self)
        """Image generation, editing and deferred requests."""
        self.batches = Batches(self)
        """xAI's Batch API: create, add, poll, page through results, cancel."""
        self.files = Files(self)
        """The Files API, as far as batches need it: upload, get, delete."""

    @staticmethod
    def _check_base_url(raw: str) -> str:
        try:
            url = URL(raw.strip())
        except (TypeError, ValueError):
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            raise ConfigurationError(
                f"base_url must be an http(s) URL such as {DEFAULT_BASE_URL}, got {raw!r}"
            )
        return str(url).rstrip("/")

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The API root, e.g. ``https://api.x.ai/v1``."""
        return self._base_url

    @property
    def timeout(self) -> Timeout:
        """The default per-attempt :class:`Timeout`."""
        return self._timeout

    @property
    def retry(self) -> RetryPolicy:
        """The default :class:`RetryPolicy`."""
        return self._retry

    @property
    def closed(self) -> bool:
        """``True`` after :meth:`aclose`."""
        return self._closed

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<AsyncClient base_url={self._base_url!r} {state}>"

    async def __aenter__(self) -> AsyncClient:
        if self._closed:
            raise ClientClosedError("this AsyncClient is closed; create a new one")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the session the client created (a caller's session is left open). Idempotent."""
        if self._closed:
            return
        self._closed = True
        session, self._session = self._session, None
        if self._owns_session and session is not None:
            await session.close()

    def _require_session(self) -> aiohttp.ClientSession:
        """The pooled session, created on first use (it needs a running event loop).

        Raises:
            ClientClosedError: the client was closed.
        """
        if self._closed:
            raise ClientClosedError("this AsyncClient is closed; create a new one")
        if self._session is None:
            trace = aiohttp.TraceConfig()
            trace.on_request_headers_sent.append(_on_headers_sent)
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, limit_per_host=0, ttl_dns_cache=300
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                trace_configs=[trace],
                # API requests set their own limits; downloads have their own stall detection.
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._timeout.connect),
            )
        return self._session

    def batch(
        self,
        requests: Source,
        *,
        output_dir: str | os.PathLike[str],
        manifest: str | os.PathLike[str] | None = None,
        concurrency: int = 16,
        retry_failed: bool = False,
        resend_unknown: bool = False,
        on_event: Callable[[ProgressEvent], None] | None = None,
        on_exists: OnExists = "overwrite",
        verify_sha256: bool = False,
        via: Literal["realtime", "batch-api"] = "realtime",
        detach: bool = False,
        wait: bool = True,
        cancel: bool = False,
    ) -> BatchRun | RemoteBatchRun:
        """Run many generate and edit requests as one resumable job; iterate for outcomes.

        Nothing starts before the first iteration. Prefer
        ``async with client.batch(...) as run: async for outcome in run: ...`` (one
        ``Outcome`` per item, as items finish) so that leaving the loop early stops the workers
        and closes the manifest at once; ``await run.collect()`` runs to the end. Each image is
        saved as ``{id}-{index}.{ext}`` and each finished item appends a line to the manifest.
        One item failing never stops the others.

        Resuming: run the same job with the same manifest again. Items recorded ``ok`` whose
        files are intact are skipped. Items recorded ``failed`` or ``blocked`` run again only
        with ``retry_failed``; items recorded ``unknown`` only with ``resend_unknown``.

        Args:
            requests: ``GenerateRequest`` / ``EditRequest`` objects, dicts shaped like job-file
                lines, ``InvalidJob`` markers, in a list, any iterable or async iterable; or
                the path of a JSONL job file (one object per line with ``prompt`` and
                optionally any other field of ``GenerateRequest``; an ``image`` or
                ``images`` key makes it an edit, relative paths resolve against the file's
                directory). Every item is validated before it is sent; a bad one becomes a
                failed outcome naming its line.
            output_dir: where images and the manifest go; made absolute at once, so
                ``Outcome.files`` are absolute paths.
            manifest: the manifest file (default ``output_dir/manifest.jsonl``). Records of an
                earlier run there decide what is skipped (see Resuming).
            concurrency: API requests in flight at once. Downloads are capped separately by
                ``DownloadOptions.concurrency``; request starts by the client's ``rate_limit``.
            retry_failed: run again the items an earlier run recorded as ``failed`` or
                ``blocked``. A failed item whose images were generated (billed) but not saved
                is downloaded again from its recorded URLs, not generated again; a blocked item
                (moderation withheld every image) is generated again, which may pay again.
            resend_unknown: send again the items whose outcome is ``unknown`` (sent, answer
                lost), and generate again billed items whose image URLs expired; both may pay
                twice.
            on_event: called with a ``ProgressEvent`` for every step (from the event loop;
                keep it quick). Exceptions it raises are logged and ignored. The live counters
                are also on ``run.progress``.
            on_exists: what to do when an image file already exists: ``"overwrite"`` (default:
                the manifest, not a stray file, is the job's record), ``"skip"`` (keep an
                identical file; a different one fails the item), ``"fail"``.
            verify_sha256: when resuming, hash the files of done items instead of checking
                their sizes.
            via: ``"realtime"`` (default): each request is a real-time call, paced by the
                client's ``rate_limit``. ``"batch-api"``: the requests go into one xAI batch
                (not counted against the rate limit; results over minutes to hours) and each
                image is saved as its result appears; returns a ``RemoteBatchRun``. See
                ``docs/batch-api.md``.
            detach: (batch-api) submit everything, record it in the manifest, and end without
                waiting; ``run.batch_id`` says which batch. Running the same job again
                (same manifest) attaches to it.
            wait: (batch-api) ``False``: save the results already there, then end.
            cancel: (batch-api) cancel the recorded batch, then save what finished.

        Raises:
            ValidationError: ``concurrency`` or ``on_exists`` is invalid (at once). Problems
                with single items never raise: they become failed outcomes. Iterating raises
                only if the manifest cannot be written or the request source itself raises.
        """
        if via == "batch-api":
            from ._batch_remote import RemoteBatchRun

            return RemoteBatchRun(
                self,
                requests,
                output_dir=output_dir,
                manifest=manifest,
                concurrency=concurrency,
                retry_failed=retry_failed,
                resend_unknown=resend_unknown,
                on_event=on_event,
                on_exists=on_exists,
                verify_sha256=verify_sha256,
                detach=detach,
                wait=wait,
                cancel=cancel,
            )
        if via != "realtime":
            raise ValidationError("via", via, "'realtime' or 'batch-api'")
        from ._batch import BatchRun  # deferred: the bulk engine is not needed otherwise

        return BatchRun(
            self,
            requests,
            output_dir=output_dir,
            manifest=manifest,
            concurrency=concurrency,
            retry_failed=retry_failed,
            resend_unknown=resend_unknown,
            on_event=on_event,
            on_exists=on_exists,
            verify_sha256=verify_sha256,
        )

    # -- the request path --------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        timeout: Timeout | float | None = None,
        max_retries: int | None = None,
        idempotent: bool = False,
        content: tuple[bytes, str] | None = None,
        reconciled: bool = False,
    ) -> _Answer:
        """Send one API request with retries; return the 2xx answer.

        ``idempotent`` requests (polls) are also retried when the answer was lost after
        sending; paid ones only with ``RetryPolicy(retry_unknown_outcome=True)``, and
        ``reconciled`` ones never (their caller reconciles a lost answer itself).
        ``content`` is a raw body and its content type, sent instead of ``body`` as JSON.

        Raises:
            APIStatusError: (a subclass per status) an error status, after retries for 429/5xx.
            APIConnectionError: the request never reached the server, after retries.
            OutcomeUnknownError: the request was sent but the answer was lost.
            APIResponseError: a 2xx answer that is not the documented JSON.
            ClientClosedError: the client was closed.
        """
        attempt_timeout = _coerce_timeout(timeout, self._timeout)
        try:
            policy = self._retry.with_attempts(max_retries)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        url = self._base_url + path
        log_path = URL(url).path
        data: bytes | None = None
        content_type = "application/json"
        if content is not None:
            data, content_type = content
        elif body is not None:
            data = await _dumps(body)
        loop = asyncio.get_running_loop()
        started = loop.time()
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._limited_attempt(
                    method, url, log_path, (data, content_type), attempt_timeout
                )
            except APIError as error:
                if reconciled and isinstance(error, OutcomeUnknownError):
                    raise
                delay = self._retry_delay(error, attempt, policy, idempotent, started, loop.time())
                if delay is None:
                    raise
                _logger.debug(
                    "retrying %s %s in %.2f s (attempt %d of %d): %s",
                    method,
                    log_path,
                    delay,
                    attempt + 1,
                    policy.max_attempts,
                    _short(error),
                    extra={
                        "xai_event": "retry",
                        "xai_status": getattr(error, "status_code", None),
                        "xai_delay": delay,
                        "xai_attempt": attempt + 1,
                    },
                )
                # Bulk jobs count retries through this hook (a no-op outside one).
                notify("retry", delay=delay, error=error)
                await sleep(delay)

    def _retry_delay(
        self,
        error: APIError,
        attempt: int,
        policy: RetryPolicy,
        idempotent: bool,
        started: float,
        now: float,
    ) -> float | None:
        """Seconds to wait before retrying ``error``, or ``None`` to raise it."""
        retry_after: float | None = None
        if isinstance(error, APIStatusError):
            if error.status_code not in _RETRY_STATUSES:
                return None
            retry_after = parse_retry_after(error.headers)
            if retry_after is not None and retry_after > policy.max_retry_after:
                # Raised at once (RateLimitError carries retry_after) instead of sleeping long.
                self._log_decision(error, f"server asked to wait {retry_after:.1f} s, over the cap")
                return None
        elif isinstance(error, OutcomeUnknownError):
            if not (idempotent or policy.retry_unknown_outcome):
                self._log_decision(error, "the request may have been processed")
                return None
        elif not isinstance(error, APIConnectionError):
            return None
        if attempt >= policy.max_attempts:
            self._log_decision(error, f"giving up after {attempt} attempts")
            return None
        delay = policy.delay(attempt, retry_after)
        if policy.max_elapsed is not None and (now - started) + delay > policy.max_elapsed:
            self._log_decision(error, f"giving up: retrying would pass {policy.max_elapsed} s")
            return None
        return delay

    @staticmethod
    def _log_decision(error: APIError, why: str) -> None:
        _logger.debug(
            "not retrying %s %s: %s (%s)",
            error.method,
            error.path,
            why,
            _short(error),
            extra={"xai_event": "give_up", "xai_status": getattr(error, "status_code", None)},
        )

    async def _limited_attempt(
        self,
        method: str,
        url: str,
        log_path: str,
        data: tuple[bytes | None, str],
        timeout: Timeout,
    ) -> _Answer:
        if self._semaphore is None:
            return await self._attempt(method, url, log_path, data, timeout)
        async with self._semaphore:
            return await self._attempt(method, url, log_path, data, timeout)

    async def _attempt(
        self,
        method: str,
        url: str,
        log_path: str,
        content: tuple[bytes | None, str],
        timeout: Timeout,
    ) -> _Answer:
        session = self._require_session()
        if self._limiter is not None:
            await self._limiter.acquire()
        notify("attempt")
        headers = {
            "Authorization": f"Bearer {self._key.get()}",
            "Accept": "application/json",
            "User-Agent": f"xai-images/{_VERSION}",
        }
        data, content_type = content
        if data is not None:
            headers["Content-Type"] = content_type
        state = _SendState()
        loop = asyncio.get_running_loop()
        started = loop.time()
        status: int | None = None
        request_id: str | None = None
        try:
            async with session.request(
                method,
                url,
                data=data,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout.request, sock_connect=timeout.connect),
                allow_redirects=False,  # a redirect must never carry the key elsewhere
                raise_for_status=False,
                trace_request_ctx=state,
            ) as resp:
                status = resp.status
                request_id = resp.headers.get("x-request-id")
                if not 200 <= status < 300:
                    error = await self._status_error(resp, method, log_path, request_id)
                    self._log_exchange(method, log_path, str(status), started, request_id)
                    if status == 429:
                        retry_after = parse_retry_after(resp.headers)
                        # Every 429 is reported here, once, retried or not and with or without
                        # a limiter: bulk jobs count them through this hook.
                        notify("rate_limited", delay=retry_after)
                        if self._limiter is not None:
                            self._limiter.on_rate_limited(retry_after)
                    raise error
                scanner = B64ResponseScanner()
                try:
                    async for chunk in resp.content.iter_chunked(_READ_CHUNK):
                        scanner.feed(chunk)
                        # iter_chunked does not suspend while data is buffered: yield, so that
                        # a body already received (a few MB of base64, ~0.6 ms per chunk to
                        # decode) is decoded over several loop iterations, not in one step.
                        await asyncio.sleep(0)
                    skeleton, payloads = scanner.close()
                except ValueError as exc:
                    if isinstance(exc, aiohttp.ClientError):
                        raise
                    # Only the base64 scanner raises a plain ValueError here.
                    self._log_exchange(
                        method, log_path, f"{status} unreadable", started, request_id
                    )
                    raise APIResponseError(
                        self._key.redact(f"the answer to {method} {log_path} is not valid: {exc}"),
                        method=method,
                        path=log_path,
                    ) from exc
                answer_headers = resp.headers
        except APIError:
            raise
        except aiohttp.InvalidURL as exc:
            raise ConfigurationError(f"invalid API URL for {method} {log_path}") from exc
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise self._transport_error(exc, state, method, log_path, started, status) from exc
        self._log_exchange(method, log_path, str(status), started, request_id)
        body = await _loads(skeleton, method, log_path) if skeleton.strip() else None
        return _Answer(status, answer_headers, request_id, body, payloads)

    def _transport_error(
        self,
        exc: BaseException,
        state: _SendState,
        method: str,
        log_path: str,
        started: float,
        status: int | None,
    ) -> APIError:
        """Map an aiohttp/asyncio failure onto the error tree (``never pay twice``)."""
        is_timeout = isinstance(exc, asyncio.TimeoutError)
        kind = type(exc).__name__
        # Nothing reached the server when connecting failed, or (for the owned session, whose
        # trace hook tells) when the failure came before the request headers went out. For a
        # caller's session without the hook, anything past connecting counts as sent.
        not_sent = isinstance(exc, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError))
        if not not_sent and self._owns_session and status is None and not state.headers_sent:
            not_sent = True
        where = f"{method} {log_path}"
        self._log_exchange(method, log_path, f"failed ({kind})", started, None)
        if not_sent:
            if is_timeout:
                return APITimeoutError(
                    f"{where}: connecting to {self._base_url} timed out; nothing was sent",
                    method=method,
                    path=log_path,
                )
            return APIConnectionError(
                self._key.redact(f"{where}: could not connect to {self._base_url}: {exc}"),
                method=method,
                path=log_path,
            )
        reason = "timeout" if is_timeout else "disconnected"
        what = "timed out" if is_timeout else "lost its connection"
        if method == "GET":
            message = f"{where} {what} before the answer arrived; polling again is safe"
        else:
            message = (
                f"{where} {what} after the request was sent: the server may have generated, "
                "and billed, the images anyway. It was not retried so as not to pay twice; to "
                "retry such failures set AsyncClient(retry=RetryPolicy(retry_unknown_outcome="
                "True))"
            )
        return OutcomeUnknownError(message, reason=reason, method=method, path=log_path)

    async def _status_error(
        self,
        resp: aiohttp.ClientResponse,
        method: str,
        log_path: str,
        request_id: str | None,
    ) -> APIStatusError:
        status = resp.status
        text = ""
        try:
            raw = await resp.content.read(_MAX_ERROR_BODY)
            text = raw.decode("utf-8", "replace")
        except (aiohttp.ClientError, asyncio.TimeoutError):
            pass  # the status alone is enough to report
        text = self._key.redact(text)
        parsed: Any = None
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = None
        message, code = _error_message(parsed, text)
        if 300 <= status < 400:
            message = (
                f"the API answered a redirect to {resp.headers.get('Location', '?')!r}; it is "
                "not followed, so that the API key never goes to another URL. Check base_url"
            )
        message = message or resp.reason or "no message"
        cls = status_error_class(status)
        kwargs: dict[str, Any] = {
            "status_code": status,
            "request_id": request_id,
            "code": code,
            "headers": resp.headers,
            "body": parsed if parsed is not None else text,
            "method": method,
            "path": log_path,
        }
        if cls is RateLimitError:
            return RateLimitError(message, retry_after=parse_retry_after(resp.headers), **kwargs)
        return cls(message, **kwargs)

    @staticmethod
    def _log_exchange(
        method: str, log_path: str, outcome: str, started: float, request_id: str | None
    ) -> None:
        if not _logger.isEnabledFor(logging.DEBUG):
            return
        elapsed = asyncio.get_running_loop().time() - started
        _logger.debug(
            "%s %s -> %s in %.3f s (request id %s)",
            method,
            log_path,
            outcome,
            elapsed,
            request_id or "-",
            extra={"xai_event": "exchange", "xai_request_id": request_id},
        )


def _short(error: APIError) -> str:
    if isinstance(error, APIStatusError):
        return str(error.status_code)
    return type(error).__name__


async def _dumps(body: Mapping[str, Any]) -> bytes:
    # Edit bodies carry data URIs of up to ~14 MB; encoding those would stall the loop.
    if _approx_large(body):
        return await asyncio.to_thread(_encode, body)
    return _encode(body)


def _encode(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _approx_large(body: Mapping[str, Any]) -> bool:
    total = 0
    stack: list[Any] = [body]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return total > _LARGE_JSON


async def _loads(skeleton: bytes, method: str, log_path: str) -> Any:
    try:
        if len(skeleton) > _LARGE_JSON:
            return await asyncio.to_thread(json.loads, skeleton)
        return json.loads(skeleton)
    except ValueError as exc:
        raise APIResponseError(
            f"the answer to {method} {log_path} is not JSON: {exc}", method=method, path=log_path
        ) from exc
