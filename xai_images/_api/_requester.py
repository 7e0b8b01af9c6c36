"""``Requester``: the one API request path of a client, and all its resources see of it.

A client builds one `Requester` from its parts (transport, session, limits, retry policy,
hooks, transfers) and hands it to each resource (``client.images``, ``client.batches``,
``client.files``). A resource uses three things, and only these: `Requester.send` (one API
request with the client's limits, retries, never-pay-twice rule and hooks), the client's
`Requester.transfers` (given to the models it builds) and `Requester.hooks`. So no resource
reaches into the client, and nothing below the client imports it.

`send` iterates the one retry loop of ``_wire/_retry.py``, asks the transport
(``_wire/_transport.py``) for one attempt at a time and decides from the error whether another
attempt is safe: 429 and 5xx answers and failures to connect are retried; a lost answer only
for ``idempotent`` requests (polls) or with ``RetryPolicy(retry_unknown_outcome=True)``, so a
paid POST is never sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import attrs
from yarl import URL

from .._config import Timeout, coerce_timeout
from .._errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    ConfigurationError,
    OutcomeUnknownError,
)
from .._hooks import (
    CostReported,
    Hooks,
    RateLimited,
    RequestSent,
    ResponseReceived,
    RetryScheduled,
)
from .._results._transfers import Transfers
from .._wire._gate import budgets
from .._wire._paths import api_url
from .._wire._ratelimit import RateLimiter
from .._wire._retry import Attempts, RetryPolicy, parse_retry_after
from .._wire._shared_limit import SharedRateLimiter
from .._wire._transport import Answer, Consume, Transport, dumps

__all__ = ["Requester"]

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_NOT_RUN = frozenset({429})  # a refusal: retried for reconciled requests too, unlike a 5xx


def _short(error: APIError) -> str:
    if isinstance(error, APIStatusError):
        return str(error.status_code)
    return type(error).__name__


def _cost_of(body: Any) -> int | None:
    usage = body.get("usage") if isinstance(body, Mapping) else None
    ticks = usage.get("cost_in_usd_ticks") if isinstance(usage, Mapping) else None
    return ticks if isinstance(ticks, int) and not isinstance(ticks, bool) else None


@attrs.define(eq=False, repr=False)
class Requester:
    """The request path of one client: what its resources may use of it.

    Attributes:
        transfers: the client's `Transfers`, given to the models resources build.
        hooks: the client's event hooks.
    """

    _transport: Transport
    _base_url: str
    _session: Callable[[], aiohttp.ClientSession]
    _timeout: Timeout
    _retry: RetryPolicy
    _limiter: RateLimiter | SharedRateLimiter | None = attrs.field(kw_only=True)
    _max_concurrent: int | None = attrs.field(kw_only=True)
    transfers: Transfers = attrs.field(kw_only=True)
    hooks: Hooks = attrs.field(kw_only=True)
    _owner: object = attrs.field(default=None, kw_only=True)
    _semaphore: asyncio.Semaphore | None = attrs.field(init=False)

    @_semaphore.default
    def _cap(self) -> asyncio.Semaphore | None:
        return asyncio.Semaphore(self._max_concurrent) if self._max_concurrent else None

    def __repr__(self) -> str:
        return repr(self._owner)  # resources show their client: <Images of <AsyncClient ...>>

    async def send(
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
        consume: Consume | None = None,
    ) -> Answer:
        """Send one API request with retries; return the 2xx answer.

        ``idempotent`` requests (polls) are also retried when the answer was lost after
        sending; paid ones only with ``RetryPolicy(retry_unknown_outcome=True)``; ``reconciled``
        ones never, nor after a 5xx (their caller checks). ``content``: a raw body and its type.
        ``consume``: reads a binary 2xx answer instead of JSON (a file's content, streamed to
        its target); its result is the answer's ``body``; called again on a retry. Ids in
        ``path`` are encoded once by ``segment`` (``_wire/_paths.py``); the path is sent as is.

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
        # Taken as encoded: yarl would decode an id's %3A back to ":" otherwise.
        url = api_url(self._base_url, path)
        log_path = url.raw_path
        data = content or (await dumps(body) if body is not None else None)
        hooks = self.hooks

        retried = functools.partial(RetryScheduled, method=method, path=log_path, origin=origin)

        def on_retry(attempt: int, delay: float, error: BaseException, reason: str) -> None:
            if hooks:
                hooks.emit(retried(attempt=attempt, delay=delay, reason=reason, error=error))

        async for attempt in Attempts(policy, f"{method} {log_path}", on_retry=on_retry):
            try:
                async with self._slot():
                    return await self._attempt(
                        method,
                        url,
                        log_path,
                        data,
                        attempt_timeout,
                        attempt.number,
                        origin,
                        consume,
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
        url: URL,
        log_path: str,
        data: bytes | tuple[bytes, str] | None,
        timeout: Timeout,
        number: int,
        origin: object,
        consume: Consume | None = None,
    ) -> Answer:
        session = self._session()
        if self._limiter is not None:
            await self._limiter.acquire()
        # At most a few request starts per loop iteration (shared with image fetches), so that
        # a hundred calls made at once do not hold the caller's loop for tens of milliseconds.
        # Nothing has been sent yet: waiting here changes no retry or billing decision.
        await budgets().starts.spend()
        hooks = self.hooks
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
            answer = await self._transport.send(
                session, method, url, log_path, data, timeout, consume
            )
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
