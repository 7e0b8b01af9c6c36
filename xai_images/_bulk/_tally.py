"""Accounting of a bulk job: the state of each item, the live counters and the events.

`Tally` turns what happens into `Progress` counters and ``ProgressEvent`` values
for the run's ``on_event`` callback. It hears of API retries, 429s and download retries through
the client's public event hooks (`Tally.on_client_event`), and tells its own items apart
by the ``origin`` each event carries: the `Item` for API requests, the image being saved
for downloads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

from .._errors import OutcomeUnknownError
from .._hooks import (
    DownloadRetry,
    Event,
    RateLimited,
    RequestSent,
    ResponseReceived,
    RetryScheduled,
)
from ._progress import EventEmitter, Progress, ProgressEvent

if TYPE_CHECKING:
    from .._api._models import ImagesResponse
    from .._api._requests import Request
    from ._manifest import ManifestRecord
    from ._outcome import Outcome

__all__ = ["Item", "Tally"]


@attrs.define(eq=False)
class Item:
    """Mutable state of one item while it is in flight (either source).

    Only items in flight have one; what the run must remember about the others lives in the
    manifest (or, for items in an xAI batch, in the Batch API source's `InBatch`). ``held`` is
    that source's: the item was read back from its `InBatch`, which holds it until it ends;
    ``reservation`` is what the spend seam reserved for it.
    """

    id: str
    request: Request
    tally: Tally | None = attrs.field(default=None, repr=False)
    prior: ManifestRecord | None = None
    download_only: bool = False
    held: bool = False
    reservation: object = attrs.field(default=None, repr=False)
    attempts: int = 0
    retry_notes: int = 0
    sent: bool = False
    # An attempt went out and no error status came back for it (it may be running or billed).
    awaiting: bool = False
    # Attempts whose answer was lost after sending (retried only under retry_unknown_outcome).
    lost: int = 0
    response: ImagesResponse | None = None

    @property
    def in_doubt(self) -> bool:
        """Whether the server may have run (and billed) this item's request: some attempt
        went out without an error status coming back. Waiting for a rate limiter or a slot,
        or an attempt answered 429/5xx, leaves no doubt."""
        return self.awaiting or self.lost > 0


class Tally(EventEmitter):
    """Counters and events of one run.

    Args:
        on_event: the run's callback (``None``: none); exceptions it raises are logged once and
            ignored, because a broken progress callback must not fail items that may be paid for.
    """

    progress: Progress

    def __init__(
        self, on_event: Callable[[ProgressEvent], None] | None, progress: Progress | None = None
    ) -> None:
        super().__init__(on_event, progress if progress is not None else Progress())
        # Images being saved, by identity, to the item they belong to: download retries name
        # the image as their origin.
        self.saving: dict[int, Item] = {}

    def on_client_event(self, event: Event) -> None:
        """Count the retries and 429s of this run's items (other callers' events are ignored)."""
        if isinstance(event, DownloadRetry):
            saving = self.saving.get(id(event.origin))
            if saving is not None:
                self.progress.retries += 1
                self.emit(
                    "retrying",
                    saving.id,
                    delay=event.delay,
                    error=event.error,
                    line=saving.request.line,
                )
            return
        item = event.origin
        if not isinstance(item, Item) or item.tally is not self:
            return
        p = self.progress
        if isinstance(event, RequestSent):
            # Published once the rate limiter and the concurrency slot let the attempt go:
            # only from here on may the server have the request.
            item.sent = True
            item.awaiting = True
            item.attempts += 1
            if item.attempts - 1 > item.retry_notes:
                p.retries += 1
                self.emit("retrying", item.id, attempt=item.attempts - 1, line=item.request.line)
        elif isinstance(event, ResponseReceived):
            if event.status >= 300:
                item.awaiting = False  # an error status: the server did not run it
        elif isinstance(event, RetryScheduled):
            item.retry_notes += 1
            # The attempt is over. The client retries a paid request only when the server
            # provably did not run it, except a lost answer under retry_unknown_outcome.
            item.awaiting = False
            if isinstance(event.error, OutcomeUnknownError):
                item.lost += 1
            # 429s are counted by their own RateLimited event, sent for every 429.
            if item.retry_notes > item.attempts - 1:
                p.retries += 1
                self.emit(
                    "retrying",
                    item.id,
                    attempt=item.attempts,
                    delay=event.delay,
                    error=event.error,
                    line=item.request.line,
                )
        elif isinstance(event, RateLimited):
            p.rate_limited += 1
            self.emit("rate_limited", item.id, delay=event.retry_after, line=item.request.line)

    def count(self, outcome: Outcome) -> None:
        """Count an item that ended in this run and tell ``on_event`` (``saved``/``failed``)."""
        p = self.progress
        status = outcome.status
        if status in ("ok", "blocked", "unknown", "expired"):
            setattr(p, status, getattr(p, status) + 1)
        else:
            p.failed += 1
        if outcome.status == "ok":
            record = outcome.record
            self.emit(
                "saved",
                outcome.id,
                images=len(outcome.files),
                bytes=sum(f.bytes for f in record.files) if record else 0,
                line=outcome.line,
            )
        else:
            self.emit(
                "failed", outcome.id, status=outcome.status, error=outcome.error, line=outcome.line
            )
