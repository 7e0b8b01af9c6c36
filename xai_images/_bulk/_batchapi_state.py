"""What the Batch API source adds to a job's state: the error of a failed batch request and the
progress counters with the server's.
"""

from __future__ import annotations

import statistics
import time
from array import array
from collections.abc import Callable

from .._errors import XAIImagesError
from ._progress import Progress

__all__ = ["BatchRequestError", "RemoteProgress"]


class BatchRequestError(XAIImagesError):
    """A batch request failed at the server (its outcome is ``failed``).

    Attributes:
        code: the server's code (gRPC numbers: 1 cancelled, 3 invalid argument, 13 internal),
            when it sent one.
        server_message: the server's message.
    """

    def __init__(self, message: str, *, code: int | str | None = None) -> None:
        super().__init__(f"[code {code}] {message}" if code is not None else message)
        self.code = code
        self.server_message = message


class RemoteProgress(Progress):
    """:class:`Progress` of a Batch API job, with the server's counters and the save delays.

    ``in_flight`` counts items added to the batch and not settled yet; ``expired`` items whose
    images expired before they could be saved.

    Attributes:
        server_requests, server_pending, server_succeeded, server_failed, server_cancelled:
            the batch's counters at the last poll.
        batch_id: the batch, once known.
        result_waits: (floats) for each saved item, seconds from its request finishing at the
            server (or, when the answer does not say, from its result first being read) to its
            images being on disk: how much of the URLs' one-hour life was used.
        seen_waits: for each saved item, seconds from its result being read to its images on
            disk.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(clock=clock)
        self.server_requests = 0
        self.server_pending = 0
        self.server_succeeded = 0
        self.server_failed = 0
        self.server_cancelled = 0
        self.batch_id: str | None = None
        # Compact arrays of 4-byte floats (seconds to about 7 digits), not lists of floats.
        self.result_waits: array[float] = array("f")
        self.seen_waits: array[float] = array("f")

    def __repr__(self) -> str:
        return (
            f"RemoteProgress(batch_id={self.batch_id!r}, total={self.total}, ok={self.ok}, "
            f"failed={self.failed}, blocked={self.blocked}, expired={self.expired}, "
            f"server_pending={self.server_pending}, images={self.images})"
        )

    def margin(self) -> tuple[float, float] | None:
        """``(median, worst)`` of :attr:`result_waits`, or ``None`` before any save."""
        if not self.result_waits:
            return None
        return statistics.median(self.result_waits), max(self.result_waits)

    def server_line(self) -> str:
        """One line of the server's counters and what was saved."""
        from ._progress import format_bytes, format_usd

        return (
            f"batch {self.batch_id or '-'}: {self.server_pending} pending, "
            f"{self.server_succeeded} succeeded, {self.server_failed} failed, "
            f"{self.server_cancelled} cancelled at the server; {self.images} images saved, "
            f"{format_bytes(self.bytes)}, {format_usd(self.cost_in_usd_ticks)}"
        )
