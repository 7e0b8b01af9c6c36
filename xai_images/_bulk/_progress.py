"""Progress of a bulk job: typed events and running counters.

The bulk engine calls ``on_event(event)`` for every step of every item; each event carries the
live `Progress` counters. The renderers that draw them (rich bars, plain lines) are in
``_render.py``, which only the CLI imports.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Literal

import attrs

from .._units import TICKS_PER_USD, format_bytes, format_usd

__all__ = [
    "TICKS_PER_USD",
    "EventEmitter",
    "EventKind",
    "Progress",
    "ProgressEvent",
    "format_bytes",
    "format_usd",
]

EventKind = Literal[
    "queued",
    "skipped",
    "started",
    "generated",
    "saved",
    "failed",
    "retrying",
    "rate_limited",
    "finished",
]
"""What happened: ``queued`` (item accepted), ``skipped`` (done in an earlier run), ``started``
(its API request is about to be sent), ``generated`` (the API answered with images), ``saved``
(every image is on disk: the item is ok), ``failed`` (the item ended failed, blocked or unknown),
``retrying`` (a request or download is retried), ``rate_limited`` (a 429 arrived),
``finished`` (the whole run is over; ``item_id`` is ``None``)."""

logger = logging.getLogger("xai_images")


class Progress:
    """Running counters of a bulk job, updated by the batch engine before each event.

    Attributes:
        total: items read so far (grows while the job is read).
        expected: the items the job holds, when counted before the run (a job file's lines
            are counted first, cheaply); ``None``: not counted, see `job_size`.
        ok, failed, blocked, unknown, expired: items finished with that status in this run
            (``expired``: only through the Batch API).
        skipped: items not run because an earlier run settled them.
        started: items whose API request was sent at least once.
        generated: items the API answered with images.
        images: images saved in this run.
        bytes: bytes saved in this run.
        cost_in_usd_ticks: cost reported by the API in this run.
        rate_limited: 429 answers the API sent (each one, whether retried or not).
        retries: retried API requests and retried image downloads.
        interrupted: the run was asked to stop before every item was done.
        max_cost_ticks: the job's budget (``max_cost``) in USD ticks, or ``None``.
        budget_reached: a request was not sent because it could take the spend past
            ``max_cost``; the run stopped there (resumable).
        spent_in_usd_ticks: with ``max_cost``: the job's spend counted against it (earlier
            runs included; a request without a reported cost counts its worst-case price).
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.started_at = clock()
        self.finished_at: float | None = None
        # Every counter starts at zero: items by outcome, then work done, then API trouble.
        self.expected: int | None = None
        self.total = self.ok = self.failed = self.blocked = self.unknown = self.skipped = 0
        self.expired = 0
        self.started = self.generated = self.images = self.bytes = self.cost_in_usd_ticks = 0
        self.rate_limited = self.retries = 0
        self.interrupted = False
        self.max_cost_ticks: int | None = None
        self.budget_reached = False
        self.spent_in_usd_ticks = 0

    def __repr__(self) -> str:
        return (
            f"Progress(total={self.total}, ok={self.ok}, failed={self.failed}, "
            f"blocked={self.blocked}, unknown={self.unknown}, skipped={self.skipped}, "
            f"images={self.images}, bytes={self.bytes}, cost_usd={self.cost_usd:.4f}, "
            f"rate_limited={self.rate_limited}, retries={self.retries})"
        )

    @property
    def job_size(self) -> int | None:
        """How many items the whole job holds, when known from the start (`expected`, or
        `total` if more were read); ``None`` while the job is still being read and counted."""
        if self.expected is None:
            return None
        return max(self.expected, self.total)

    @property
    def done(self) -> int:
        """Items settled: finished in this run (any status) or skipped."""
        return self.ended + self.skipped

    @property
    def errors(self) -> int:
        """Items that ended failed, blocked, unknown or expired in this run."""
        return self.failed + self.blocked + self.unknown + self.expired

    @property
    def ended(self) -> int:
        """Items that ended in this run, whatever their status."""
        return self.ok + self.errors

    @property
    def in_flight(self) -> int:
        """Items started but not finished."""
        return self.started - self.ended

    @property
    def elapsed(self) -> float:
        """Seconds since the run started (frozen once it finished)."""
        end = self.finished_at if self.finished_at is not None else self._clock()
        return max(0.0, end - self.started_at)

    @property
    def images_per_second(self) -> float:
        """Images saved per second of elapsed time."""
        elapsed = self.elapsed
        return self.images / elapsed if elapsed > 0 else 0.0

    @property
    def cost_usd(self) -> float:
        """The cost reported so far, in US dollars."""
        return self.cost_in_usd_ticks / TICKS_PER_USD

    def finish(self) -> None:
        """Freeze `elapsed` (called by the engine when the run ends)."""
        if self.finished_at is None:
            self.finished_at = self._clock()


class EventEmitter:
    """Delivers a run's progress events to its ``on_event`` callback.

    Args:
        on_event: the run's callback (``None``: none); exceptions it raises are logged once and
            ignored, because a broken progress callback must not fail items that may be paid for.
        progress: the live counters every event carries.
    """

    def __init__(self, on_event: Callable[[ProgressEvent], None] | None, progress: Any) -> None:
        self.progress = progress
        self._on_event = on_event
        self._event_error_logged = False

    def emit(self, kind: EventKind, item_id: str | None, **fields: Any) -> None:
        """Call the callback with one event (nothing when there is none)."""
        if self._on_event is None:
            return
        try:
            self._on_event(ProgressEvent(kind, item_id, self.progress, **fields))
        except Exception:
            # A broken progress callback must not fail the items (they may be paid for).
            if not self._event_error_logged:
                self._event_error_logged = True
                logger.exception("xai-images batch: the on_event callback raised; ignoring")


@attrs.frozen
class ProgressEvent:
    """One step of one item of a bulk job.

    Attributes:
        kind: see `EventKind`.
        item_id: the item's id (``None`` for ``finished``).
        progress: the live counters, already updated for this event.
        status: for ``failed``/``skipped``: the item's status (``failed``, ``blocked``,
            ``unknown``, or ``ok`` for an item skipped because it is done).
        images: images generated (``generated``) or saved (``saved``).
        bytes: bytes saved (``saved``).
        error: the error, for ``failed`` and ``retrying``.
        attempt: the attempt that failed, for ``retrying``.
        delay: seconds until the retry or the end of the rate-limit pause, when known.
        line: the item's line in the JSONL job file, when it came from one.
    """

    kind: EventKind
    item_id: str | None
    progress: Progress = attrs.field(eq=False, repr=False)
    status: str | None = None
    images: int = 0
    bytes: int = 0
    error: BaseException | None = None
    attempt: int | None = None
    delay: float | None = None
    line: int | None = None
