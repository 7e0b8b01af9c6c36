"""Manifest records of a bulk job's items: what one line of the manifest says about an item.

Built from the item's state when it finishes (or is interrupted), so that a later run can
resume it without paying twice: billed items keep their cost and their unsaved image URLs, items
whose request went out without an answer are ``unknown``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from .._errors import OutcomeUnknownError, XAIImagesError
from ._manifest import FileRecord, ItemStatus, ManifestRecord, PendingImage

if TYPE_CHECKING:
    from .._api._requests import Request
    from .._results._files import SavedImage
    from ._tally import Item

__all__ = ["Answer", "build_record", "interrupted_record", "item_record"]


def item_record(
    item: Item,
    status: ItemStatus,
    output_dir: Path,
    *,
    error: BaseException | None = None,
    files: Sequence[SavedImage] = (),
    pending: Sequence[PendingImage] = (),
    billed: bool = False,
    note: str | None = None,
    keep: Sequence[FileRecord] = (),
) -> ManifestRecord:
    """The manifest record of ``item`` ending with ``status`` (file paths relative to
    ``output_dir``; ``keep``: files of an earlier run that stay valid)."""
    request = item.request
    response = item.response
    prior = item.prior if item.download_only else None
    revised: dict[int, str | None] = {}
    if response is not None:
        revised = {img.index: img.revised_prompt for img in response.images}
    elif prior is not None:
        revised = {p.index: p.revised_prompt for p in prior.pending}
    if prior is not None:
        answer = Answer(prior.request_id, prior.attempts, prior.cost_in_usd_ticks, prior.model)
    else:
        answer = Answer(
            response.request_id if response else getattr(error, "request_id", None),
            max(item.attempts, item.retry_notes + 1) if item.sent else 0,
            response.usage.cost_in_usd_ticks if response and response.usage else None,
            (response.model if response else None) or request.model,
        )
    return build_record(
        item.id,
        request,
        status,
        answer,
        output_dir,
        files,
        keep=keep,
        pending=pending,
        revised=revised,
        error=error,
        message=note,
        billed=billed or (prior is not None and prior.billed),
    )


@attrs.frozen
class Answer:
    """Who answered an item's request, after how many attempts, at what cost, with which model."""

    request_id: str | None
    attempts: int
    cost: int | None
    model: str | None


def build_record(
    item_id: str,
    request: Request,
    status: ItemStatus,
    answer: Answer,
    output_dir: Path,
    files: Sequence[SavedImage],
    *,
    keep: Sequence[FileRecord] = (),
    pending: Sequence[PendingImage] = (),
    revised: Mapping[int, str | None] | None = None,
    error: BaseException | None = None,
    message: str | None = None,
    billed: bool = False,
) -> ManifestRecord:
    """The manifest record of one item of either bulk engine (``message``: said when there is
    no ``error``; ``revised``: the revised prompts by image index)."""
    records = tuple(keep) + tuple(
        FileRecord(
            path=s.key if s.key is not None else _relative(s.path, output_dir),
            bytes=s.bytes,
            sha256=s.sha256,
            mime_type=s.mime_type,
            revised_prompt=(revised or {}).get(s.index),
        )
        for s in files
    )
    return ManifestRecord(
        id=item_id,
        kind=request.kind,
        request=request.to_json(),
        status=status,
        files=records,
        request_id=answer.request_id,
        attempts=answer.attempts,
        cost_in_usd_ticks=answer.cost,
        error=str(error) if error is not None else message,
        error_type=type(error).__name__ if error is not None else None,
        billed=billed,
        pending=tuple(pending),
        line=request.line,
        model=answer.model,
        finished_at=time.time(),
    )


def interrupted_record(item: Item, output_dir: Path) -> ManifestRecord | None:
    """What to record for an item cancelled mid-way, so a resume never pays twice.

    ``None`` (no record: the next run sends it as new) unless the server may have run it.
    """
    if item.response is not None:
        pending = [PendingImage(i.index, i.url, i.revised_prompt) for i in item.response.images]
        error = XAIImagesError("interrupted while saving; retry downloads the images")
        return item_record(item, "failed", output_dir, error=error, pending=pending, billed=True)
    if item.in_doubt and not item.download_only:
        # Only a request that actually went out (and was not refused) can have been billed;
        # an item still waiting for the rate limiter or a slot resumes as not yet run.
        error = OutcomeUnknownError(
            "interrupted after the request was sent: it may have been billed",
            reason="cancelled",
        )
        return item_record(item, "unknown", output_dir, error=error)
    return None


def _relative(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.as_posix()
