"""`Outcome`: how one item of a bulk job ended (what iterating a run yields)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from .._api._requests import Request
    from ._manifest import ItemStatus, ManifestRecord

__all__ = ["Outcome"]


@attrs.frozen
class Outcome:
    """How one item of a bulk job ended.

    Attributes:
        id: the item's id (``line-N`` for a job-file line that could not be read).
        status: ``ok``, ``failed`` (safe to retry with ``retry_failed=True``), ``blocked``
            (moderation) or ``unknown`` (sent, answer lost: maybe billed; resent only with
            ``resend_unknown=True``).
        request: the request, or ``None`` when the item could not be read.
        files: the saved image files (absolute paths), for ``ok`` items.
        error: why it is not ``ok``.
        skipped: the item was settled by an earlier run (its manifest record) and not run.
        line: its line in the job file, when it came from one.
        record: the manifest record written for it (or the earlier one, when skipped).
    """

    id: str
    status: ItemStatus
    request: Request | None = None
    files: tuple[Path, ...] = ()
    error: BaseException | None = None
    skipped: bool = False
    line: int | None = None
    record: ManifestRecord | None = attrs.field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        """``True`` when every image of the item is saved."""
        return self.status == "ok"
