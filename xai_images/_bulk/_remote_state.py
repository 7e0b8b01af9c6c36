"""What a Batch API bulk job keeps between runs: its run records, progress and per-item errors.

A job through the Batch API writes, besides one record per finished item, run records into its
manifest (lines with a ``"record"`` key, ``fsync``-ed), before and after each remote step:

- ``{"record": "run", "run_id"}``: before the batch is created (its name is the run id, so a
  create whose answer was lost is found again by name).
- ``{"record": "batch", "run_id", "batch_id"}``: once the batch exists.
- ``{"record": "adding", "batch_id", "ids"}``: before an add call; ``{"record": "added", ...}``
  once the batch holds those ids (after the call, or after listing the batch's requests).
- ``{"record": "refused", "batch_id", "ids"}``: the API refused an add call (400 or 413), so
  none of those ids is in the batch.
- ``{"record": "cancel", "batch_id"}``: a cancel was asked for.
- ``{"record": "closed", "batch_id"}``: every item of the batch is settled; a later run with
  work to do starts a new batch.

Reading them back tells a resumed run which batch to attach to and which items it holds.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import attrs

from .._api._requests import Request
from .._errors import XAIImagesError
from ._manifest import RUN_RECORD_KEY, ManifestRecord
from ._progress import Progress

__all__ = ["BatchRequestError", "Item", "JobState", "RemoteProgress", "RunState", "load_job_state"]

logger = logging.getLogger("xai_images")


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


@attrs.define
class Item:
    """One item of a Batch API job while it runs."""

    id: str
    request: Request
    entry: bytes | None = None
    saving: bool = False


@attrs.define
class RunState:
    """One run (one batch) as its records describe it."""

    run_id: str
    line: int
    batch_id: str | None = None
    intended: set[str] = attrs.Factory(set)
    added: set[str] = attrs.Factory(set)
    cancel_requested: bool = False
    closed: bool = False
    accepts_adds: bool = True

    @property
    def in_doubt(self) -> set[str]:
        """Ids of add calls that started but were not confirmed (a crash in between)."""
        return self.intended - self.added


@attrs.define
class JobState:
    """The manifest read back: the latest record of each item (with its line) and the runs."""

    items: dict[str, tuple[int, ManifestRecord]] = attrs.Factory(dict)
    runs: list[RunState] = attrs.Factory(list)

    @property
    def open_run(self) -> RunState | None:
        """The last run, unless it is closed."""
        if self.runs and not self.runs[-1].closed:
            return self.runs[-1]
        return None


def load_job_state(path: str | os.PathLike[str]) -> JobState:
    """Read a manifest's item and run records (a torn last line is ignored)."""
    state = JobState()
    try:
        fh = open(path, "rb")  # noqa: SIM115  (a missing file is an empty state)
    except FileNotFoundError:
        return state
    by_batch: dict[str, RunState] = {}
    with fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.endswith(b"\n") or not raw.strip():
                continue
            try:
                data = json.loads(raw)
                if not isinstance(data, dict):
                    continue
                if RUN_RECORD_KEY in data:
                    _apply_run_record(state, by_batch, data, number)
                else:
                    record = ManifestRecord.from_json(data)
                    state.items[record.id] = (number, record)
            except (ValueError, TypeError, KeyError) as exc:
                logger.warning("manifest %s: skipping unreadable line %d: %s", path, number, exc)
    return state


def _apply_run_record(
    state: JobState, by_batch: dict[str, RunState], data: dict[str, Any], line: int
) -> None:
    kind = data[RUN_RECORD_KEY]
    if kind == "run":
        state.runs.append(RunState(str(data["run_id"]), line))
        return
    batch_id = data.get("batch_id")
    if kind == "batch":
        run = next((r for r in reversed(state.runs) if r.run_id == data.get("run_id")), None)
        if run is None:
            run = RunState(str(data.get("run_id") or batch_id), line)
            state.runs.append(run)
        run.batch_id = str(batch_id)
        by_batch[run.batch_id] = run
        return
    run = by_batch.get(str(batch_id))
    if run is None:
        return
    ids = {str(i) for i in data.get("ids") or ()}
    if kind == "adding":
        run.intended |= ids
    elif kind == "added":
        run.intended |= ids
        run.added |= ids
    elif kind == "refused":
        run.intended -= ids
    elif kind == "cancel":
        run.cancel_requested = True
    elif kind == "closed":
        run.closed = True


class RemoteProgress(Progress):
    """:class:`Progress` of a Batch API job, with the server's counters and the save delays.

    Attributes:
        expired: items whose images expired before they could be saved.
        server_requests, server_pending, server_succeeded, server_failed, server_cancelled:
            the batch's counters at the last poll.
        batch_id: the batch, once known.
        result_waits: for each saved item, seconds from its request finishing at the server
            (or, when the answer does not say, from its result first being read) to its images
            being on disk: how much of the URLs' one-hour life was used.
        seen_waits: for each saved item, seconds from its result being read to its images on
            disk.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(clock=clock)
        self.expired = 0
        self.server_requests = 0
        self.server_pending = 0
        self.server_succeeded = 0
        self.server_failed = 0
        self.server_cancelled = 0
        self.batch_id: str | None = None
        self.result_waits: list[float] = []
        self.seen_waits: list[float] = []

    def __repr__(self) -> str:
        return (
            f"RemoteProgress(batch_id={self.batch_id!r}, total={self.total}, ok={self.ok}, "
            f"failed={self.failed}, blocked={self.blocked}, expired={self.expired}, "
            f"server_pending={self.server_pending}, images={self.images})"
        )

    @property
    def done(self) -> int:
        """Items settled in this run (any status) or skipped."""
        return super().done + self.expired

    @property
    def errors(self) -> int:
        """Items that ended failed, blocked, unknown or expired in this run."""
        return super().errors + self.expired

    @property
    def in_flight(self) -> int:
        """Items added to the batch and not settled yet."""
        return self.started - (self.ok + self.failed + self.blocked + self.unknown + self.expired)

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
