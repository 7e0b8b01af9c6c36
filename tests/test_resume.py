"""The resume decision of a bulk job, as a pure function of the record and the switches."""

from __future__ import annotations

from typing import Any

import pytest

from xai_images import OutcomeUnknownError, XAIImagesError
from xai_images._bulk._manifest import PendingImage
from xai_images._bulk._resume import ResumeOptions, decide_resume
from xai_images.bulk import ManifestRecord

PLAIN = ResumeOptions()
RETRY = ResumeOptions(retry_failed=True)
RESEND = ResumeOptions(resend_unknown=True)
BOTH = ResumeOptions(retry_failed=True, resend_unknown=True)


def record(status: Any, **fields: Any) -> ManifestRecord:
    return ManifestRecord(id="a", kind="generate", request={"prompt": "x"}, status=status, **fields)


def test_ok_with_intact_files_is_skipped_without_error() -> None:
    """A done item whose files are intact is skipped, as ok."""
    decision = decide_resume(record("ok"), PLAIN, files_intact=True)
    assert (decision.action, decision.error) == ("skip", None)


def test_ok_with_missing_files_runs_again() -> None:
    """A done item whose files are gone is run again."""
    assert decide_resume(record("ok"), PLAIN, files_intact=False).action == "run"


def test_unknown_is_resent_only_when_asked() -> None:
    """An unknown outcome is skipped with OutcomeUnknownError unless resend_unknown."""
    skipped = decide_resume(record("unknown"), RETRY, files_intact=False)
    assert skipped.action == "skip"
    assert isinstance(skipped.error, OutcomeUnknownError)
    assert decide_resume(record("unknown"), RESEND, files_intact=False).action == "run"


@pytest.mark.parametrize("status", ["failed", "blocked"])
def test_failed_and_blocked_run_again_only_with_retry_failed(status: str) -> None:
    """Failed and blocked items are skipped (with a hint) unless retry_failed."""
    skipped = decide_resume(record(status), PLAIN, files_intact=False)
    assert skipped.action == "skip"
    assert isinstance(skipped.error, XAIImagesError)
    assert "retry_failed" in str(skipped.error)
    assert decide_resume(record(status), RETRY, files_intact=False).action == "run"


def test_billed_failure_with_urls_is_downloaded_not_generated() -> None:
    """A billed failed item with recorded URLs is downloaded again, never generated again."""
    billed = record("failed", billed=True, pending=(PendingImage(0, "https://img/0.png"),))
    assert decide_resume(billed, RETRY, files_intact=False).action == "download"
    assert decide_resume(billed, BOTH, files_intact=False).action == "download"


def test_billed_failure_without_urls_needs_resend_unknown() -> None:
    """A billed item that cannot be fetched again is generated again only with resend_unknown."""
    billed = record("failed", billed=True)
    skipped = decide_resume(billed, RETRY, files_intact=False)
    assert skipped.action == "skip"
    assert "resend_unknown" in str(skipped.error)
    assert decide_resume(billed, BOTH, files_intact=False).action == "run"
