"""``CoreClient``: configuration and lifecycle (session, writer threads, shared limiter).

``CoreClient`` is everything of ``AsyncClient`` but bulk jobs: the public ``AsyncClient``
(``_bulk/_client.py``) adds ``bulk(...)`` on top of it, so that nothing in this layer or below
needs the bulk engine. Every API call goes through the client's one `Requester`
(``_requester.py``: limits, retries, never pay twice, hooks), which is also all its resources
(``client.images``, ``client.batches``, ``client.files``) see of it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

import aiohttp

from .._config import (
    DEFAULT_MAX_ANSWER_BYTES,
    DownloadOptions,
    Timeout,
    check_base_url,
    coerce_timeout,
    find_api_key,
    int_at_least,
    missing_key_error,
    positive_number,
)
from .._errors import (
    ClientClosedError,
    ConfigurationError,
)
from .._hooks import (
    EventHook,
    Hooks,
)
from .._readonly import ReadOnly
from .._results._files import WriterPool
from .._results._transfers import Transfers
from .._wire._ratelimit import RateLimiter
from .._wire._retry import RetryPolicy
from .._wire._shared_limit import SharedRateLimiter
from .._wire._transport import Secret, Transport, trace_config
from ._images import Images
from ._requester import Requester

if TYPE_CHECKING:
    from ._batches import Batches
    from ._files import Files

__all__ = ["DEFAULT_BASE_URL", "CoreClient", "Timeout", "requester_of"]

DEFAULT_BASE_URL = "https://api.x.ai/v1"
"""Used when neither ``base_url=`` nor ``XAI_BASE_URL`` is set."""

_Self = TypeVar("_Self", bound="CoreClient")

# aiohttp's read buffer per response, bytes (its default is 256 KiB; see _require_session).
_READ_BUFSIZE = 64 * 1024


def _bad_argument(name: str, value: object, limit: str) -> ConfigurationError:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return ConfigurationError(f"{name} must be {limit}, got {shown}")


class CoreClient:
    """The async client without bulk jobs: everything of `AsyncClient` but ``bulk``.

    Its arguments, checks and errors are documented on ``AsyncClient``
    (``_bulk/_client.py``), the public subclass users create.
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
        key = find_api_key(api_key)
        if key is None:
            raise missing_key_error("AsyncClient")
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
        self._shared_limit_url = shared_limit  # bulk budgets are shared there too
        if shared_limit is not None and rate_limit is None:
            raise ConfigurationError("shared_limit needs rate_limit (requests per second)")
        self._limiter: RateLimiter | SharedRateLimiter | None = (
            None
            if rate_limit is None
            else RateLimiter(rate_limit)
            if shared_limit is None
            else SharedRateLimiter(shared_limit, api_key=key, rate=rate_limit)
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
        # The writer threads belong to the client: started when it opens (or at its first
        # request), shut down in aclose().
        self._writers = WriterPool()
        self._transfers = Transfers(
            self._require_session,
            download or DownloadOptions(),
            writers=self._writers,
            hooks=self._hooks,
        )
        self._requester = Requester(
            self._transport,
            self._base_url,
            self._require_session,
            self._timeout,
            self._retry,
            limiter=self._limiter,
            max_concurrent=max_concurrent_requests,
            transfers=self._transfers,
            hooks=self._hooks,
            owner=self,
        )
        self._request = self._requester.send  # the one request path (``_requester.py``)
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
        """The Files API."""
        from ._files import Files

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
                # What aiohttp buffers per response before it stops reading the socket (it
                # grows to the chunk size while a body is read). An answer waiting for its turn
                # to decode (_wire/_gate.py: Backlog) then holds ~128 KiB instead of ~512 KiB,
                # and a hundred answers arriving together take fewer reads in one iteration.
                read_bufsize=_READ_BUFSIZE,
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


def requester_of(client: object) -> Requester:
    """The request path of ``client`` (`Requester`: sending, `Requester.transfers`, hooks),
    for the layers above the client that are not handed it when built (the bulk engine): the
    one seam through which they reach it, instead of the client's private attributes.

    Raises:
        TypeError: ``client`` is not a client of this package.
    """
    if not isinstance(client, CoreClient):
        raise TypeError(f"not an xai_images client: {type(client).__name__}")
    return client._requester
