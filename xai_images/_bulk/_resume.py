"""The resume decision of a bulk job: what to do with an item an earlier run recorded.

A pure function of the manifest record, the run's switches and whether the recorded files are
intact (the caller checks the disk), so that the never-pay-twice rules of resuming can be read
and tested in one place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import attrs

from .._errors import ImageExpiredError, OutcomeUnknownError, XAIImagesError

if TYPE_CHECKING:
    from ._manifest import ManifestRecord

__all__ = ["Resume", "ResumeOptions", "decide_resume"]


@attrs.frozen
class ResumeOptions:
    """The switches of a run that allow doing again what an earlier run did.

    Attributes:
        retry_failed: run again items recorded ``failed`` or ``blocked``.
        resend_unknown: send again items recorded ``unknown``, and generate again billed items
            whose images cannot be fetched any more (both may pay twice).
    """

    retry_failed: bool = False
    resend_unknown: bool = False


@attrs.frozen
class Resume:
    """What to do with an item.

    Attributes:
        action: ``"skip"`` (settled: report the recorded outcome), ``"run"`` (generate it, as
            if new) or ``"download"`` (fetch the recorded images of a billed item again).
        error: for ``"skip"`` of an item that did not end ``ok``: why it is not run again.
    """

    action: Literal["skip", "run", "download"]
    error: BaseException | None = None


_RUN = Resume("run")


def decide_resume(record: ManifestRecord, options: ResumeOptions, *, files_intact: bool) -> Resume:
    """Decide from ``record`` (an earlier run's record of the same request) what to do now.

    ``files_intact`` tells whether the files of an ``ok`` record are still there and unchanged
    (ignored for other statuses).
    """
    status = record.status
    if status == "ok":
        return Resume("skip") if files_intact else _RUN
    if status == "unknown":
        if options.resend_unknown:
            return _RUN
        return Resume(
            "skip",
            OutcomeUnknownError(
                f"{record.error or 'the answer was lost'} (not resent: it may have been "
                "billed; pass resend_unknown=True / --resend-unknown to send it again)",
                reason="earlier",
            ),
        )
    if status == "expired":
        # Billed, and its images can no longer be fetched: only generating again (and paying
        # again) gets them, which resend_unknown asks for.
        if options.resend_unknown:
            return _RUN
        return Resume(
            "skip",
            ImageExpiredError(
                f"expired in an earlier run: {record.error or ''} (generated again only with "
                "resend_unknown=True / --resend-unknown: it may be billed again)"
            ),
        )
    if not options.retry_failed:
        return Resume(
            "skip",
            XAIImagesError(
                f"{status} in an earlier run: {record.error or ''} "
                "(retry with retry_failed=True / --retry-failed)"
            ),
        )
    if status == "blocked":
        # Moderation withheld every image: there is nothing to download, and running it
        # again means generating (and maybe paying) again, which retry_failed asks for.
        return _RUN
    if record.billed:
        if any(p.url for p in record.pending):
            return Resume("download")
        if not options.resend_unknown:
            return Resume(
                "skip",
                XAIImagesError(
                    "its images were generated (and billed) in an earlier run but could not be "
                    "saved and cannot be fetched again; pass resend_unknown=True / "
                    "--resend-unknown to generate (and pay) again"
                ),
            )
    return _RUN
