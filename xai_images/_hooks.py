"""Public event hooks: what happens on the wire, published to callbacks users attach.

``AsyncClient(event_hooks=[callback])``, ``client.add_event_hook(callback)`` and
``client.remove_event_hook(callback)``. A callback is a plain function taking one event; it is
called on the event loop, synchronously, in the order the callbacks were added, so it must be
quick and must not block (hand slow work to a queue or a task).

Every event carries ``origin``: for API requests, whatever the caller passed as the request's
origin (``client.images.send(request, origin=...)``; by default the request object itself);
for downloads, the ``GeneratedImage`` being fetched. A subscriber that runs many requests
(the bulk engine) tells its own events apart by ``origin`` identity, without a context
variable.

A callback that raises does not affect the request: the exception is logged (once per
callback, with its traceback, on the ``xai_images`` logger) and the other callbacks still run.
The events are sent while a paid request is in flight: an observer's bug must never turn a
generation that succeeded (and was billed) into a failure, nor abort a retry half-way.

It imports nothing from the package (it sits at the bottom, below the client).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import attrs

__all__ = [
    "CostReported",
    "DownloadRetry",
    "Event",
    "EventHook",
    "Hooks",
    "RateLimited",
    "RequestSent",
    "ResponseReceived",
    "RetryScheduled",
]

_logger = logging.getLogger("xai_images")


@attrs.frozen(kw_only=True)
class RequestSent:
    """An API request attempt is about to go out (after rate limiting; once per attempt).

    Attributes:
        method, path: e.g. ``"POST"``, ``"/v1/images/generations"``.
        attempt: 1 for the first attempt, 2 for the first retry, ...
        origin: see the module docstring.
    """

    method: str
    path: str
    attempt: int
    origin: object = attrs.field(default=None, eq=False, repr=False)


@attrs.frozen(kw_only=True)
class ResponseReceived:
    """The API answered an attempt (any status; sent before a retry is decided).

    Attributes:
        status: the HTTP status.
        request_id: the ``x-request-id`` header, when present.
        elapsed: seconds from sending to the end of the answer.
    """

    method: str
    path: str
    status: int
    request_id: str | None
    elapsed: float
    origin: object = attrs.field(default=None, eq=False, repr=False)


@attrs.frozen(kw_only=True)
class RetryScheduled:
    """An API request will be sent again after ``delay`` seconds.

    Attributes:
        attempt: the attempt that failed.
        delay: seconds until the next attempt (the server's ``Retry-After`` when it sent one).
        reason: a short reason: the status (``"503"``) or the error class name.
        error: the error of the failed attempt.
    """

    method: str
    path: str
    attempt: int
    delay: float
    reason: str
    error: BaseException = attrs.field(eq=False)
    origin: object = attrs.field(default=None, eq=False, repr=False)


@attrs.frozen(kw_only=True)
class RateLimited:
    """The API answered 429 (sent for every 429, retried or not, before any retry).

    Attributes:
        retry_after: the wait the server asked for, in seconds, when it said.
    """

    method: str
    path: str
    retry_after: float | None
    origin: object = attrs.field(default=None, eq=False, repr=False)


@attrs.frozen(kw_only=True)
class DownloadRetry:
    """An image download will be attempted again (resuming where possible).

    Attributes:
        url: the image URL.
        attempt: the attempt that failed.
        delay: seconds until the next attempt.
        reason: what went wrong (``"HTTP 503"``, ``"no data for 15 s"``, ...).
        error: the error the download would raise if it gave up now.
        origin: the ``GeneratedImage`` being downloaded.
    """

    url: str
    attempt: int
    delay: float
    reason: str
    origin: object = attrs.field(default=None, eq=False, repr=False)
    error: BaseException = attrs.field(eq=False)


@attrs.frozen(kw_only=True)
class CostReported:
    """An API answer reported what it cost (``usage.cost_in_usd_ticks``; 1 USD = 10**10).

    Attributes:
        cost_in_usd_ticks: the cost of this answer.
        request_id: the answer's request id, when present.
    """

    method: str
    path: str
    cost_in_usd_ticks: int
    request_id: str | None
    origin: object = attrs.field(default=None, eq=False, repr=False)


Event = RequestSent | ResponseReceived | RetryScheduled | RateLimited | DownloadRetry | CostReported
"""Any of the event classes."""

EventHook = Callable[[Event], Any]
"""A callback for `Event` values (its return value is ignored)."""


class Hooks:
    """The callbacks of one client, called in the order they were added."""

    __slots__ = ("_failed", "_hooks")

    def __init__(self, hooks: Iterable[EventHook] = ()) -> None:
        self._hooks: tuple[EventHook, ...] = ()
        self._failed: set[int] = set()
        for hook in hooks:
            self.add(hook)

    def __bool__(self) -> bool:
        return bool(self._hooks)

    def add(self, hook: EventHook) -> None:
        """Append ``hook`` (adding the same callback twice calls it twice).

        Raises:
            TypeError: ``hook`` is not callable.
        """
        if not callable(hook):
            raise TypeError(f"an event hook must be callable, got {hook!r}")
        # A new tuple each time: emitting iterates a snapshot, so a hook may add or remove hooks.
        self._hooks = (*self._hooks, hook)

    def remove(self, hook: EventHook) -> None:
        """Remove one registration of ``hook``.

        Raises:
            ValueError: ``hook`` was not added.
        """
        hooks = list(self._hooks)
        try:
            hooks.remove(hook)
        except ValueError:
            raise ValueError(f"{hook!r} is not an event hook of this client") from None
        self._hooks = tuple(hooks)

    def emit(self, event: Event) -> None:
        """Call every hook with ``event``; a hook that raises is logged, never propagated."""
        for hook in self._hooks:
            try:
                hook(event)
            except Exception:
                if id(hook) not in self._failed:
                    self._failed.add(id(hook))
                    _logger.exception(
                        "xai-images: the event hook %r raised; ignoring it (logged once)", hook
                    )
