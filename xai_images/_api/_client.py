"""``CoreClient``: configuration, lifecycle (session and writer threads) and retry decisions.

``CoreClient`` is everything of ``AsyncClient`` but bulk jobs: the public ``AsyncClient``
(``_bulk/_client.py``) adds ``bulk(...)`` on top of it, so that nothing in this layer or below
needs the bulk engine. Resources get the narrow `Requester` (``_requester.py``), not the client.

Every API call goes through `CoreClient._request`: it applies the client-wide limits,
asks the transport (``_transport.py``) for one attempt at a time, decides from the error whether
another attempt is safe (never pay twice) and iterates the one retry loop of ``_retry.py``. What
happens is published to the client's event hooks (``_hooks.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
from yarl import URL

from .._config import (
    DEFAULT_MAX_ANSWER_BYTES,
    DownloadOptions,
    Timeout,
    check_base_url,
    coerce_timeout,
    int_at_least,
    positive_number,
)
from .._errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    ClientClosedError,
    ConfigurationError,
    OutcomeUnknownError,
)
from .._hooks import (
    CostReported,
    EventHook,
    Hooks,
    RateLimited,
    RequestSent,
    ResponseReceived,
    RetryScheduled,
)
from .._readonly import ReadOnly
from .._results._files import WriterPool
from .._results._transfers import Transfers
from .._wire._gate import budgets
from .._wire._ratelimit import RateLimiter
from .._wire._retry import Attempts, RetryPolicy, parse_retry_after
from .._wire._shared_limit import SharedRateLimiter
from .._wire._transport import Answer, Secret, Transport, dumps, trace_config
from ._images import Images
from ._requester import Requester

if TYPE_CHECKING:
    from ._batches import Batches, Files

__all__ = ["DEFAULT_BASE_URL", "CoreClient", "Timeout"]

DEFAULT_BASE_URL = "https://api.x.ai/v1"
"""Used when neither ``base_url=`` nor ``XAI_BASE_URL`` is set."""

_logger = logging.getLogger("xai_images")
_Self = TypeVar("_Self", bound="CoreClient")
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_NOT_RUN = frozenset({429})  # a refusal: retried for reconciled requests too, unlike a 5xx


def _bad_argument(name: str, value: object, limit: str) -> ConfigurationError:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return ConfigurationError(f"{name} must be {limit}, got {shown}")


def _short(error: APIError) -> str:
    if isinstance(error, APIStatusError):
        return str(error.status_code)
    return type(error).__name__


def _cost_of(body: Any) -> int | None:
    usage = body.get("usage") if isinstance(body, Mapping) else None
    ticks = usage.get("cost_in_usd_ticks") if isinstance(usage, Mapping) else None
    return ticks if isinstance(ticks, int) and not isinstance(ticks, bool) else None


class CoreClient:
    """Async client for the xAI image API. Use it as ``async with AsyncClient() as client:``.

    Args:
        api_key: the key; else ``XAI_API_KEY``. Never shown in reprs, errors or logs.
        base_url: the API root; else ``XAI_BASE_URL``; else ``https://api.x.ai/v1``.
        timeout: per-attempt limits: a `Timeout`, or a number of seconds for
            ``Timeout.request``. Default ``Timeout(request=600, connect=10)``. Calls may override.
        max_retries: retries after the first attempt (default 2, so 3 attempts). Calls may
            override.
        retry: the full `RetryPolicy` (``max_retries`` then sets its attempts).
        session: an ``aiohttp.ClientSession`` to use instead of creating one. The client never
            closes a session it did not create. It must not carry an ``Authorization`` default
            header (it would be sent to the image host too).
        max_connections: connection pool size of the session the client creates (0: no limit).
        rate_limit: requests per second for API requests of this client (``None``: unlimited;
            the live API allows about 5). Shared by every call, spaced with no burst.
        shared_limit: a Redis URL (``redis://HOST:PORT/DB``): ``rate_limit`` then holds for
            every process and machine on this API key together (`SharedRateLimiter`;
            needs ``xai-images[shared]``). Redis unreachable at entry raises
            `SharedLimitError`.
        max_concurrent_requests: API requests in flight at once (``None``: unlimited).
        download: options for saving and streaming images (``DownloadOptions``).
        event_hooks: callbacks called with every event of this client (request sent, answer,
            retry, 429, download retry, cost); see `add_event_hook`.
        max_answer_bytes: the largest API answer read, counted after decompression (default
            128 MiB, above ten 2k images as base64); a larger one raises ``APIResponseError``
            without being held in memory.

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
        event_hooks: Iterable[EventHook] | None = None,
        shared_limit: str | None = None,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
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
        self._key = Secret(key)
        if base_url is not None and not isinstance(base_url, str):
            raise _bad_argument("base_url", base_url, f"an http(s) URL such as {DEFAULT_BASE_URL}")
        if base_url is not None and not base_url.strip():
            # An empty base_url is a mistake (an unset variable, a bad template), never a
            # request for the default: falling back would send the key to the live API.
            raise _bad_argument(
                "base_url", base_url, f"a non-empty http(s) URL such as {DEFAULT_BASE_URL}"
            )
        # An empty XAI_BASE_URL counts as unset, as for any environment variable.
        self._base_url = check_base_url(
            base_url or os.environ.get("XAI_BASE_URL") or DEFAULT_BASE_URL
        )
        if (
            timeout is not None
            and not isinstance(timeout, Timeout)
            and not positive_number(timeout)
        ):
            raise _bad_argument(
                "timeout", timeout, "a positive number of seconds, a Timeout or None"
            )
        self._timeout = coerce_timeout(timeout, Timeout())
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
        if not int_at_least(max_connections, 0):
            raise _bad_argument("max_connections", max_connections, "an int >= 0 (0: no limit)")
        if rate_limit is not None and not positive_number(rate_limit):
            raise _bad_argument(
                "rate_limit", rate_limit, "a positive finite number of requests per second or None"
            )
        if max_concurrent_requests is not None and not int_at_least(max_concurrent_requests, 1):
            raise _bad_argument(
                "max_concurrent_requests", max_concurrent_requests, "an int >= 1 or None"
            )
        if not int_at_least(max_answer_bytes, 1024):
            raise _bad_argument("max_answer_bytes", max_answer_bytes, "an int >= 1024 (bytes)")
        if download is not None and not isinstance(download, DownloadOptions):
            raise _bad_argument("download", download, "a DownloadOptions or None")
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = session
        self._owns_session = session is None
        self._closed = False
        if shared_limit is not None and rate_limit is None:
            raise ConfigurationError("shared_limit needs rate_limit (requests per second)")
        self._limiter: RateLimiter | SharedRateLimiter | None = (
            None
            if rate_limit is None
            else RateLimiter(rate_limit)
            if shared_limit is None
            else SharedRateLimiter(shared_limit, api_key=key, rate=rate_limit)
        )
        self._semaphore = (
            asyncio.Semaphore(max_concurrent_requests) if max_concurrent_requests else None
        )
        hooks: list[EventHook] = []
        if event_hooks is not None:
            if isinstance(event_hooks, (str, bytes)) or not isinstance(event_hooks, Iterable):
                raise _bad_argument("event_hooks", event_hooks, "a list of callables or None")
            hooks = list(event_hooks)
            if not all(callable(hook) for hook in hooks):
                raise _bad_argument("event_hooks", hooks, "a list of callables or None")
        self._hooks = Hooks(hooks)
        self._transport = Transport(
            self._key,
            self._base_url,
            traced=self._owns_session,
            max_answer_bytes=max_answer_bytes,
        )
        self._log_paths: dict[str, str] = {}
        # The writer threads belong to the client: started when it opens (or at its first
        # request), shut down in aclose().
        self._writers = WriterPool()
        self._transfers = Transfers(
            self._require_session,
            download or DownloadOptions(),
            writers=self._writers,
            hooks=self._hooks,
        )
        self._requester = Requester(self._request, self._transfers, self._hooks, owner=self)
        self.images = Images(self._requester)
        """Image generation, editing and deferred requests."""

    # The Batch and Files APIs (and their models) are imported on first use: most programs
    # never touch them, and they are a good part of the client's import time.
    @functools.cached_property
    def batches(self) -> Batches:
        """xAI's Batch API (``client.bulk(..., via="batch-api")`` runs whole jobs through it)."""
        from ._batches import Batches

        return Batches(self._requester)

    @functools.cached_property
    def files(self) -> Files:
        """The Files API, as far as batches need it."""
        from ._batches import Files

        return Files(self._requester)

    # -- lifecycle ---------------------------------------------------------------------------------

    base_url: ReadOnly[str] = ReadOnly("_base_url")
    """The API root, e.g. ``https://api.x.ai/v1``."""
    timeout: ReadOnly[Timeout] = ReadOnly("_timeout")
    """The default per-attempt `Timeout`."""
    retry: ReadOnly[RetryPolicy] = ReadOnly("_retry")
    """The default `RetryPolicy`."""
    closed: ReadOnly[bool] = ReadOnly("_closed")
    """``True`` after `aclose`."""

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<AsyncClient base_url={self._base_url!r} {state}>"

    async def __aenter__(self: _Self) -> _Self:
        if self._closed:
            raise ClientClosedError("this AsyncClient is closed; create a new one")
        if isinstance(self._limiter, SharedRateLimiter):
            await self._limiter.start()
        # The writer threads start now, not inside the first save on a busy loop.
        self._writers.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the session the client created (a caller's session is left open) and stop the
        writer threads (writes in progress finish first). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._writers.shutdown()
        if isinstance(self._limiter, SharedRateLimiter):
            await self._limiter.aclose()
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
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, limit_per_host=0, ttl_dns_cache=300
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                trace_configs=[trace_config()],
                # API requests set their own limits; downloads have their own stall detection.
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._timeout.connect),
            )
            self._writers.start()  # a client used without ``async with``: at first use
        return self._session

    # -- event hooks -------------------------------------------------------------------------------

    def add_event_hook(self, hook: EventHook) -> None:
        """Call ``hook`` with every event of this client (see ``_hooks.py`` for the events).

        Hooks are called on the event loop, synchronously, in the order they were added; an
        exception a hook raises is logged once and otherwise ignored.

        Raises:
            TypeError: ``hook`` is not callable.
        """
        self._hooks.add(hook)

    def remove_event_hook(self, hook: EventHook) -> None:
        """Stop calling ``hook`` (one registration of it).

        Raises:
            ValueError: ``hook`` was not added.
        """
        self._hooks.remove(hook)

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
        origin: object = None,
        content: tuple[bytes, str] | None = None,
        reconciled: bool = False,
    ) -> Answer:
        """Send one API request with retries; return the 2xx answer.

        ``idempotent`` requests (polls) are also retried when the answer was lost after
        sending; paid ones only with ``RetryPolicy(retry_unknown_outcome=True)``; ``reconciled``
        ones never, nor after a 5xx (their caller checks). ``content``: a raw body and its type.

        Raises:
            APIStatusError: (a subclass per status) an error status, after retries for 429/5xx.
            APIConnectionError: the request never reached the server, after retries.
            OutcomeUnknownError: the request was sent but the answer was lost.
            APIResponseError: a 2xx answer that is not the documented JSON.
            ClientClosedError: the client was closed.
        """
        attempt_timeout = coerce_timeout(timeout, self._timeout)
        try:
            policy = self._retry.with_attempts(max_retries)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        url = self._base_url + path
        log_path = self._log_paths.get(path)
        if log_path is None:
            # Parsed once per endpoint, not per call (a request start is on the caller's loop).
            if len(self._log_paths) >= 256:  # ids in paths (deferred polls): stay bounded
                self._log_paths.clear()
            log_path = self._log_paths[path] = URL(url).path
        data = content or (await dumps(body) if body is not None else None)
        hooks = self._hooks

        retried = functools.partial(RetryScheduled, method=method, path=log_path, origin=origin)

        def on_retry(attempt: int, delay: float, error: BaseException, reason: str) -> None:
            if hooks:
                hooks.emit(retried(attempt=attempt, delay=delay, reason=reason, error=error))

        async for attempt in Attempts(policy, f"{method} {log_path}", on_retry=on_retry):
            try:
                async with self._slot():
                    return await self._attempt(
                        method, url, log_path, data, attempt_timeout, attempt.number, origin
                    )
            except APIError as error:
                retry_after: float | None = None
                if isinstance(error, APIStatusError):
                    if error.status_code not in (_NOT_RUN if reconciled else _RETRY_STATUSES):
                        raise
                    retry_after = parse_retry_after(error.headers)
                elif isinstance(error, OutcomeUnknownError):
                    # Never pay twice: a lost answer to a paid POST is not retried by default.
                    if reconciled or not (idempotent or policy.retry_unknown_outcome):
                        attempt.give_up(error, "the request may have been processed", _short(error))
                        raise
                elif not isinstance(error, APIConnectionError):
                    raise
                if not attempt.retry(error, retry_after=retry_after, detail=_short(error)):
                    raise
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover

    def _slot(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """A place among the requests in flight (no wait without a concurrency cap)."""
        return self._semaphore if self._semaphore is not None else contextlib.nullcontext()

    async def _attempt(
        self,
        method: str,
        url: str,
        log_path: str,
        data: bytes | tuple[bytes, str] | None,
        timeout: Timeout,
        number: int,
        origin: object,
    ) -> Answer:
        session = self._require_session()
        if self._limiter is not None:
            await self._limiter.acquire()
        # At most a few request starts per loop iteration (shared with image fetches), so that
        # a hundred calls made at once do not hold the caller's loop for tens of milliseconds.
        # Nothing has been sent yet: waiting here changes no retry or billing decision.
        await budgets().starts.spend()
        hooks = self._hooks
        if hooks:
            hooks.emit(RequestSent(method=method, path=log_path, attempt=number, origin=origin))
        loop = asyncio.get_running_loop()
        started = loop.time()

        def answered(status: int, request_id: str | None) -> None:
            if hooks:
                elapsed = loop.time() - started
                hooks.emit(
                    ResponseReceived(
                        method=method,
                        path=log_path,
                        status=status,
                        request_id=request_id,
                        elapsed=elapsed,
                        origin=origin,
                    )
                )

        try:
            answer = await self._transport.send(session, method, url, log_path, data, timeout)
        except APIStatusError as error:
            answered(error.status_code, error.request_id)
            if error.status_code == 429:
                retry_after = parse_retry_after(error.headers)
                # Every 429 is reported, once, retried or not and with or without a limiter.
                if hooks:
                    hooks.emit(
                        RateLimited(
                            method=method, path=log_path, retry_after=retry_after, origin=origin
                        )
                    )
                if self._limiter is not None:
                    self._limiter.on_rate_limited(retry_after)
            raise
        answered(answer.status, answer.request_id)
        if hooks:
            ticks = _cost_of(answer.body)
            if ticks is not None:
                hooks.emit(
                    CostReported(
                        method=method,
                        path=log_path,
                        cost_in_usd_ticks=ticks,
                        request_id=answer.request_id,
                        origin=origin,
                    )
                )
        return answer
