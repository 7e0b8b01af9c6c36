"""What the two bulk engines share: option checks, paths, event delivery and run control.

``BatchRun`` (real-time requests) and ``RemoteBatchRun`` (xAI's Batch API) are driven the same
way by their users: iterate for outcomes, ``stop()``, ``aclose()``, ``collect()``. That surface
and the checks of the options both take live here once.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .._api._models import GeneratedImage
from .._config import int_at_least
from .._errors import DownloadError, ValidationError, XAIImagesError
from ._manifest import ManifestRecord, PendingImage
from ._progress import EventKind, Progress, ProgressEvent

if TYPE_CHECKING:
    from .._results._files import SavedImage
    from ._outcome import Outcome

__all__ = [
    "EventEmitter",
    "RunControl",
    "check_run_options",
    "next_outcome",
    "pending_images",
    "produce",
    "run_paths",
    "sort_saves",
]

logger = logging.getLogger("xai_images")

_R = TypeVar("_R", bound="RunControl")


def check_run_options(concurrency: object, on_exists: object) -> None:
    """Check the options every bulk run takes, before anything starts.

    Raises:
        ValidationError: ``concurrency`` is not an int >= 1, or ``on_exists`` is unknown.
    """
    if not int_at_least(concurrency, 1):
        raise ValidationError("concurrency", concurrency, "an int >= 1")
    if on_exists not in ("fail", "overwrite", "skip"):
        raise ValidationError("on_exists", on_exists, "one of 'fail', 'overwrite', 'skip'")


def run_paths(
    output_dir: str | os.PathLike[str], manifest: str | os.PathLike[str] | None
) -> tuple[Path, Path]:
    """The run's output directory (absolute) and manifest path (default in that directory)."""
    # Resolved once, so Outcome.files are absolute as documented and a later chdir cannot
    # move the job.
    resolved = Path(output_dir).resolve()
    return resolved, Path(manifest) if manifest is not None else resolved / "manifest.jsonl"


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


def sort_saves(
    images: Sequence[GeneratedImage], results: Sequence[Any], progress: Progress
) -> tuple[list[SavedImage], list[PendingImage], list[BaseException]]:
    """Split the results of saving ``images`` into the saved ones, the ones to fetch again
    later and their errors; count what was saved into ``progress``.

    Raises:
        BaseException: a result that is no download, API or file error (a bug, a cancel).
    """
    saved: list[SavedImage] = []
    pending: list[PendingImage] = []
    errors: list[BaseException] = []
    for image, result in zip(images, results, strict=True):
        if isinstance(result, BaseException):
            if not isinstance(result, (DownloadError, XAIImagesError, OSError)):
                raise result
            errors.append(result)
            pending.append(PendingImage(image.index, image.url, image.revised_prompt))
        else:
            saved.append(result)
    progress.images += len(saved)
    progress.bytes += sum(s.bytes for s in saved if not s.skipped)
    return saved, pending, errors


def pending_images(
    record: ManifestRecord, transfers: Any, request_id: str | None = None
) -> list[GeneratedImage]:
    """The images ``record`` says were billed but not saved, fetchable again from their URLs."""
    return [
        GeneratedImage(
            url=p.url,
            revised_prompt=p.revised_prompt,
            index=p.index,
            request_id=request_id,
            transfers=transfers,
        )
        for p in record.pending
        if p.url
    ]


class _Failure:
    """What ended a producer, for the consumer to raise."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


_DONE = object()


async def produce(work: Callable[[], Awaitable[None]], put: Callable[[Any], None]) -> None:
    """Run a run's producer, then tell its consumer (`next_outcome`) that it is done, or put
    what ended it (anything but a cancel) for the consumer to raise."""
    try:
        await work()
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        put(_Failure(exc))
        return
    put(_DONE)


async def next_outcome(queue: asyncio.Queue[Any]) -> Outcome | None:
    """The next outcome a producer put on ``queue``; ``None`` once it is done.

    Raises:
        BaseException: what ended the producer (the manifest cannot be written, say).
    """
    item = await queue.get()
    if isinstance(item, _Failure):
        raise item.error
    return None if item is _DONE else item


class RunControl:
    """Iteration, stopping and closing of a bulk run; subclasses provide ``_run``."""

    progress: Any  # a Progress; RemoteBatchRun's is the RemoteProgress subclass

    def __init__(self) -> None:
        self._stop = asyncio.Event()
        self._agen: AsyncIterator[Outcome] | None = None
        self._closed = False

    def _run(self) -> AsyncIterator[Outcome]:
        raise NotImplementedError

    def stop(self) -> None:
        """Stop starting new work; work in flight finishes and is recorded, then iteration ends.

        Safe to call from a signal handler running on the event loop. What was not started is
        not recorded, so running the same job again picks up exactly there.
        """
        if not self._stop.is_set():
            self._stop.set()
            self.progress.interrupted = True

    @property
    def stopping(self) -> bool:
        """``True`` once `stop` was called."""
        return self._stop.is_set()

    def __aiter__(self: _R) -> _R:
        return self

    async def __anext__(self) -> Outcome:
        if self._closed:
            raise StopAsyncIteration
        if self._agen is None:
            self._agen = self._run()
        try:
            return await self._agen.__anext__()
        except StopAsyncIteration:
            self._closed = True
            raise

    async def aclose(self) -> None:
        """Stop (cancelling the work in flight), flush and close the manifest."""
        self._closed = True
        agen, self._agen = self._agen, None
        if agen is not None:
            await agen.aclose()  # type: ignore[attr-defined]

    async def __aenter__(self: _R) -> _R:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def collect(self) -> list[Outcome]:
        """Run to the end and return every outcome, in finishing order."""
        async with self:
            return [outcome async for outcome in self]
