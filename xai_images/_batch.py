"""The bulk engine: many generate/edit requests in, one outcome per item out, resumable.

``run_batch(client, requests, output_dir=...)`` (also ``client.batch(...)``) runs every request
with at most ``concurrency`` API requests in flight (the client's rate limiter spaces their
starts), saves each image as ``{id}-{index}.{ext}``, appends a manifest line per finished item
and yields an :class:`Outcome` as each item finishes. One item failing never stops the others.

Resuming: items whose manifest record says ``ok`` and whose files are intact are skipped. Items
that ``failed`` or were ``blocked`` are run again only with ``retry_failed=True``; a failed item
whose images were already generated (billed) is then downloaded again from its recorded URLs
instead of being generated again, while a blocked one is generated again. Items whose outcome
is ``unknown`` (the request was sent, the answer was lost, it may have been billed) are resent
only with ``resend_unknown=True``; the same switch allows generating again a billed item whose
image URLs expired.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import attrs

from ._errors import (
    APIConnectionError,
    APIError,
    DownloadError,
    ImageBlockedError,
    ImageExpiredError,
    OutcomeUnknownError,
    ValidationError,
    XAIImagesError,
)
from ._jobs import InvalidJob, derive_id, load_jobs, parse_job
from ._manifest import (
    FileRecord,
    ItemStatus,
    ManifestRecord,
    ManifestWriter,
    PendingImage,
    load_manifest,
)
from ._models import GeneratedImage, ImagesResponse
from ._progress import ClientSignal, EventKind, Progress, ProgressEvent, observing
from ._requests import EditRequest, GenerateRequest, Request

if TYPE_CHECKING:
    from ._client import AsyncClient
    from ._download import OnExists, SavedImage

__all__ = ["BatchRun", "Outcome", "run_batch"]

logger = logging.getLogger("xai_images")


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


# -- the engine -----------------------------------------------------------------------------------


@attrs.define
class _Item:
    """Mutable state of one item while it runs."""

    id: str
    request: Request
    prior: ManifestRecord | None = None
    download_only: bool = False
    attempts: int = 0
    retry_notes: int = 0
    sent: bool = False
    response: ImagesResponse | None = None


class _NotStarted(Exception):
    """The run was stopped while the item waited for a request slot."""


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_DONE = object()

Job = Request | InvalidJob | Mapping[str, Any]
Source = str | os.PathLike[str] | Iterable[Job] | AsyncIterable[Job]


class BatchRun:
    """A running bulk job: iterate it for outcomes as items finish.

    Prefer ``async with client.batch(...) as run: async for outcome in run: ...`` so that
    leaving the loop early stops the workers and closes the manifest at once. Created by
    :func:`run_batch`; nothing starts before the first iteration.

    Attributes:
        progress: live counters (also carried by every event).
        output_dir: where images, the manifest and the gallery go (made absolute).
        manifest_path: the manifest file.
    """

    def __init__(
        self,
        client: AsyncClient,
        requests: Source,
        *,
        output_dir: str | os.PathLike[str],
        manifest: str | os.PathLike[str] | None = None,
        concurrency: int = 16,
        retry_failed: bool = False,
        resend_unknown: bool = False,
        on_event: Callable[[ProgressEvent], None] | None = None,
        on_exists: OnExists = "overwrite",
        verify_sha256: bool = False,
    ) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValidationError("concurrency", concurrency, "an int >= 1")
        if on_exists not in ("fail", "overwrite", "skip"):
            raise ValidationError("on_exists", on_exists, "one of 'fail', 'overwrite', 'skip'")
        self._client = client
        self._requests = requests
        # Resolved once, so Outcome.files are absolute as documented and a later chdir cannot
        # move the job.
        self.output_dir = Path(output_dir).resolve()
        self.manifest_path = (
            Path(manifest) if manifest is not None else self.output_dir / "manifest.jsonl"
        )
        self._concurrency = concurrency
        self._retry_failed = retry_failed
        self._resend_unknown = resend_unknown
        self._on_event = on_event
        self._on_exists: OnExists = on_exists
        self._verify = verify_sha256
        self.progress = Progress()
        self._stop = asyncio.Event()
        self._agen: AsyncIterator[Outcome] | None = None
        self._closed = False
        self._event_error_logged = False

    def __repr__(self) -> str:
        return f"<BatchRun output_dir={str(self.output_dir)!r} {self.progress!r}>"

    # -- control ---------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop starting new items; items in flight finish and are recorded, then iteration ends.

        Safe to call from a signal handler running on the event loop. The items not started
        are not recorded, so running the same job again picks up exactly there.
        """
        if not self._stop.is_set():
            self._stop.set()
            self.progress.interrupted = True

    @property
    def stopping(self) -> bool:
        """``True`` once :meth:`stop` was called."""
        return self._stop.is_set()

    # -- iteration -------------------------------------------------------------------------------

    def __aiter__(self) -> BatchRun:
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
        """Stop the workers (cancelling items in flight), flush and close the manifest."""
        self._closed = True
        agen, self._agen = self._agen, None
        if agen is not None:
            await agen.aclose()  # type: ignore[attr-defined]

    async def __aenter__(self) -> BatchRun:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def collect(self) -> list[Outcome]:
        """Run to the end and return every outcome, in finishing order."""
        async with self:
            return [outcome async for outcome in self]

    # -- internals -------------------------------------------------------------------------------

    def _emit(self, kind: EventKind, item_id: str | None, **fields: Any) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(ProgressEvent(kind, item_id, self.progress, **fields))
        except Exception:
            # A broken progress callback must not fail the items (they may be paid for).
            if not self._event_error_logged:
                self._event_error_logged = True
                logger.exception("xai-images batch: the on_event callback raised; ignoring")

    async def _run(self) -> AsyncIterator[Outcome]:
        prior = await asyncio.to_thread(load_manifest, self.manifest_path)
        await asyncio.to_thread(self.output_dir.mkdir, parents=True, exist_ok=True)
        writer = ManifestWriter(self.manifest_path)
        await writer.open()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        tasks: set[asyncio.Task[None]] = set()
        producer = asyncio.ensure_future(self._produce(prior, writer, queue, tasks))
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    break
                if isinstance(item, _Failure):
                    raise item.error
                yield item
        finally:
            pending = [t for t in (producer, *tasks) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
            if not producer.cancelled() and producer.done():
                producer.exception()  # retrieved; raised above through _Failure when relevant
            await writer.aclose()
            self.progress.finish()
            self._emit("finished", None)

    async def _iterate(self) -> AsyncIterator[Job]:
        source = self._requests
        if isinstance(source, (str, os.PathLike)):
            for loaded in await asyncio.to_thread(load_jobs, source):
                yield loaded
        elif isinstance(source, AsyncIterable):
            async for job in source:
                yield job
        else:
            for job in source:
                yield job

    async def _produce(
        self,
        prior: dict[str, ManifestRecord],
        writer: ManifestWriter,
        queue: asyncio.Queue[Any],
        tasks: set[asyncio.Task[None]],
    ) -> None:
        try:
            item_slots = asyncio.Semaphore(self._concurrency * 2)
            request_slots = asyncio.Semaphore(self._concurrency)
            ids: set[str] = set()
            repeats: dict[str, int] = {}
            async for job in self._iterate():
                if self._stop.is_set():
                    break
                self.progress.total += 1
                item = self._accept(job, ids, repeats, prior)
                if isinstance(item, Outcome):
                    if not item.skipped:
                        self.progress.failed += 1
                        self._emit(
                            "failed", item.id, status="failed", error=item.error, line=item.line
                        )
                    queue.put_nowait(item)
                    continue
                await item_slots.acquire()
                if self._stop.is_set():
                    item_slots.release()
                    break
                task = asyncio.ensure_future(
                    self._run_item(item, writer, queue, request_slots, item_slots)
                )
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            while tasks:
                results = await asyncio.gather(*list(tasks), return_exceptions=True)
                for result in results:
                    # Items turn their own failures into outcomes; what escapes (the manifest
                    # cannot be written) must end the run.
                    if isinstance(result, Exception):
                        raise result
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            queue.put_nowait(_Failure(exc))
            return
        queue.put_nowait(_DONE)

    def _accept(
        self,
        source_job: Job,
        ids: set[str],
        repeats: dict[str, int],
        prior: dict[str, ManifestRecord],
    ) -> _Item | Outcome:
        """Validate and name a job, and decide from the manifest whether it runs."""
        job: Request | InvalidJob
        if isinstance(source_job, Mapping):
            try:
                job = parse_job(source_job)
            except ValidationError as exc:
                job = InvalidJob(None, exc)
        else:
            job = source_job
        if isinstance(job, InvalidJob):
            name = f"line-{job.line}" if job.line is not None else f"item-{self.progress.total}"
            return Outcome(name, "failed", error=job.error, line=job.line)
        if not isinstance(job, (GenerateRequest, EditRequest)):
            error = ValidationError("request", job, "a GenerateRequest, EditRequest or dict")
            return Outcome(f"item-{self.progress.total}", "failed", error=error)
        try:
            job.validate()
        except ValidationError as exc:
            return Outcome(
                job.id or f"item-{self.progress.total}", "failed", job, error=exc, line=job.line
            )
        if job.id is not None:
            item_id = job.id
            if item_id in ids:
                error = ValidationError("id", item_id, "unique within the job")
                return Outcome(item_id, "failed", job, error=error, line=job.line)
        else:
            base = derive_id(job)
            # The same request twice (asking for more variety) gets -2, -3, ... in job order.
            count = repeats.get(base, 0) + 1
            repeats[base] = count
            item_id = base if count == 1 else f"{base}-{count}"
        ids.add(item_id)
        item = _Item(item_id, job)
        earlier = prior.get(item_id)
        if earlier is not None and earlier.request == job.to_json():
            decision = self._resume_decision(item, earlier)
            if decision is not None:
                self.progress.skipped += 1
                self._emit("skipped", item_id, status=decision.status, line=job.line)
                return decision
        self._emit("queued", item_id, line=job.line)
        return item

    def _resume_decision(self, item: _Item, earlier: ManifestRecord) -> Outcome | None:
        """``None`` to run the item; else the outcome of skipping it."""
        request = item.request

        def skip(error: BaseException | None = None) -> Outcome:
            files = tuple(self.output_dir / f.path for f in earlier.files)
            status: Any = earlier.status
            return Outcome(item.id, status, request, files, error, True, request.line, earlier)

        status = earlier.status
        if status == "ok":
            if earlier.files_intact(self.output_dir, check_sha256=self._verify):
                return skip()
            logger.info("%s: recorded ok but its files are missing or changed; running it", item.id)
            return None
        if status == "unknown":
            if self._resend_unknown:
                return None
            return skip(
                OutcomeUnknownError(
                    f"{earlier.error or 'the answer was lost'} (not resent: it may have been "
                    "billed; pass resend_unknown=True / --resend-unknown to send it again)",
                    reason="earlier",
                )
            )
        if not self._retry_failed:
            return skip(
                XAIImagesError(
                    f"{status} in an earlier run: {earlier.error or ''} "
                    "(retry with retry_failed=True / --retry-failed)"
                )
            )
        if status == "blocked":
            # Moderation withheld every image: there is nothing to download, and running it
            # again means generating (and maybe paying) again, which retry_failed asks for.
            return None
        if earlier.billed:
            if any(p.url for p in earlier.pending):
                item.prior = earlier
                item.download_only = True
                return None
            if not self._resend_unknown:
                return skip(
                    XAIImagesError(
                        "its images were generated (and billed) in an earlier run but could not be "
                        "saved and cannot be fetched again; pass resend_unknown=True / "
                        "--resend-unknown to generate (and pay) again"
                    )
                )
        return None

    async def _run_item(
        self,
        item: _Item,
        writer: ManifestWriter,
        queue: asyncio.Queue[Any],
        request_slots: asyncio.Semaphore,
        item_slots: asyncio.Semaphore,
    ) -> None:
        observing(lambda signal, delay, error: self._observe(item, signal, delay, error))
        record: ManifestRecord | None = None
        try:
            try:
                record, outcome = await self._process(item, request_slots)
            except _NotStarted:
                return
            except asyncio.CancelledError:
                record = self._interrupted_record(item)
                if record is not None:
                    await asyncio.shield(writer.write(record))
                raise
            except Exception as exc:  # a bug must not take the other items down
                logger.exception("xai-images batch: item %s failed unexpectedly", item.id)
                record, outcome = self._finish(item, "failed", error=exc)
            await writer.write(record)
        finally:
            item_slots.release()
        self._count(outcome)
        queue.put_nowait(outcome)

    def _observe(
        self, item: _Item, signal: ClientSignal, delay: float | None, error: BaseException | None
    ) -> None:
        p = self.progress
        if signal == "attempt":
            item.attempts += 1
            if item.attempts - 1 > item.retry_notes:
                p.retries += 1
                self._emit("retrying", item.id, attempt=item.attempts - 1, line=item.request.line)
        elif signal == "retry":
            item.retry_notes += 1
            # 429s are counted by their own "rate_limited" signal, sent for every 429.
            if item.retry_notes > item.attempts - 1:
                p.retries += 1
                self._emit(
                    "retrying",
                    item.id,
                    attempt=item.attempts,
                    delay=delay,
                    error=error,
                    line=item.request.line,
                )
        elif signal == "rate_limited":
            p.rate_limited += 1
            self._emit("rate_limited", item.id, delay=delay, line=item.request.line)
        elif signal == "download_retry":
            p.retries += 1
            self._emit("retrying", item.id, delay=delay, error=error, line=item.request.line)

    def _count(self, outcome: Outcome) -> None:
        p = self.progress
        if outcome.status == "ok":
            p.ok += 1
        elif outcome.status == "blocked":
            p.blocked += 1
        elif outcome.status == "unknown":
            p.unknown += 1
        else:
            p.failed += 1
        if outcome.status == "ok":
            record = outcome.record
            self._emit(
                "saved",
                outcome.id,
                images=len(outcome.files),
                bytes=sum(f.bytes for f in record.files) if record else 0,
                line=outcome.line,
            )
        else:
            self._emit(
                "failed", outcome.id, status=outcome.status, error=outcome.error, line=outcome.line
            )

    async def _process(
        self, item: _Item, request_slots: asyncio.Semaphore
    ) -> tuple[ManifestRecord, Outcome]:
        if item.download_only:
            assert item.prior is not None
            result = await self._download_pending(item)
            if result is not None:
                return result
            # The URLs expired and the caller allowed paying again: generate afresh.
        async with request_slots:
            if self._stop.is_set() and not item.download_only:
                # Stopped while waiting for a request slot: not started, so not recorded.
                raise _NotStarted
            self.progress.started += 1
            self._emit("started", item.id, line=item.request.line)
            item.sent = True
            try:
                response = await self._send(item.request)
            except OutcomeUnknownError as exc:
                return self._finish(item, "unknown", error=exc)
            except (APIError, ValidationError, XAIImagesError) as exc:
                if isinstance(exc, APIConnectionError) and self.progress.generated == 0:
                    # Nothing got through yet: the API is unreachable, stop instead of failing
                    # every item one by one. The others are not recorded, so a re-run resumes.
                    logger.error("xai-images batch: stopping, the API is unreachable: %s", exc)
                    self.stop()
                return self._finish(item, "failed", error=exc)
        item.response = response
        self.progress.generated += 1
        ticks = response.usage.cost_in_usd_ticks if response.usage else None
        self.progress.cost_in_usd_ticks += ticks or 0
        images = response.images
        self._emit("generated", item.id, images=len(images), line=item.request.line)
        if not images:
            blocked = ImageBlockedError(
                f"all {response.blocked_count or 'requested'} image(s) were withheld by moderation"
            )
            return self._finish(item, "blocked", error=blocked, billed=bool(ticks))
        saved, pending, errors = await self._save_images(item.id, images)
        note = None
        if response.blocked_count:
            note = f"{response.blocked_count} image(s) withheld by moderation"
        if errors:
            return self._finish(
                item, "failed", error=errors[0], files=saved, pending=pending, billed=True
            )
        return self._finish(item, "ok", files=saved, billed=True, note=note)

    async def _send(self, request: Request) -> ImagesResponse:
        return await self._client.images.send(request)

    async def _save_images(
        self, item_id: str, images: Sequence[GeneratedImage]
    ) -> tuple[list[SavedImage], list[PendingImage], list[BaseException]]:
        results = await asyncio.gather(
            *(
                image.save(self.output_dir / f"{item_id}-{image.index}", on_exists=self._on_exists)
                for image in images
            ),
            return_exceptions=True,
        )
        saved: list[SavedImage] = []
        pending: list[PendingImage] = []
        errors: list[BaseException] = []
        for image, result in zip(images, results, strict=True):
            if isinstance(result, BaseException):
                if isinstance(result, asyncio.CancelledError):
                    raise result
                if not isinstance(result, (DownloadError, XAIImagesError, OSError)):
                    raise result
                errors.append(result)
                pending.append(PendingImage(image.index, image.url, image.revised_prompt))
            else:
                saved.append(result)
        self.progress.images += len(saved)
        self.progress.bytes += sum(s.bytes for s in saved if not s.skipped)
        return saved, pending, errors

    async def _download_pending(self, item: _Item) -> tuple[ManifestRecord, Outcome] | None:
        """Fetch the images of an earlier billed item again; ``None`` to generate afresh."""
        prior = item.prior
        assert prior is not None
        self._emit("started", item.id, line=item.request.line)
        images = [
            GeneratedImage(
                url=p.url,
                revised_prompt=p.revised_prompt,
                index=p.index,
                request_id=prior.request_id,
                client=self._client,
            )
            for p in prior.pending
            if p.url
        ]
        saved, pending, errors = await self._save_images(item.id, images)
        kept = [f for f in prior.files if (self.output_dir / f.path).is_file()]
        if errors and all(isinstance(e, ImageExpiredError) for e in errors):
            if self._resend_unknown:
                item.download_only = False
                return None
            pending = []  # expired for good: a later retry must not try them again
        status: ItemStatus = "failed" if errors else "ok"
        record, outcome = self._finish(
            item,
            status,
            error=errors[0] if errors else None,
            files=saved,
            pending=pending,
            billed=True,
            keep=kept,
        )
        return record, outcome

    def _finish(
        self,
        item: _Item,
        status: ItemStatus,
        *,
        error: BaseException | None = None,
        files: Sequence[SavedImage] = (),
        pending: Sequence[PendingImage] = (),
        billed: bool = False,
        note: str | None = None,
        keep: Sequence[FileRecord] = (),
    ) -> tuple[ManifestRecord, Outcome]:
        request = item.request
        response = item.response
        prior = item.prior if item.download_only else None
        revised = {}
        if response is not None:
            revised = {img.index: img.revised_prompt for img in response.images}
        elif prior is not None:
            revised = {p.index: p.revised_prompt for p in prior.pending}
        records = list(keep) + [
            FileRecord(
                path=_relative(s.path, self.output_dir),
                bytes=s.bytes,
                sha256=s.sha256,
                mime_type=s.mime_type,
                revised_prompt=revised.get(s.index),
            )
            for s in files
        ]
        if prior is not None:
            cost = prior.cost_in_usd_ticks
            request_id = prior.request_id
            attempts = prior.attempts
            model = prior.model
        else:
            cost = response.usage.cost_in_usd_ticks if response and response.usage else None
            request_id = response.request_id if response else getattr(error, "request_id", None)
            attempts = max(item.attempts, item.retry_notes + 1) if item.sent else 0
            model = (response.model if response else None) or request.model
        message = None
        if error is not None:
            message = str(error)
        elif note is not None:
            message = note
        record = ManifestRecord(
            id=item.id,
            kind=request.kind,
            request=request.to_json(),
            status=status,
            files=tuple(records),
            request_id=request_id,
            attempts=attempts,
            cost_in_usd_ticks=cost,
            error=message,
            error_type=type(error).__name__ if error is not None else None,
            billed=billed or (prior is not None and prior.billed),
            pending=tuple(pending),
            line=request.line,
            model=model,
            finished_at=time.time(),
        )
        outcome = Outcome(
            item.id,
            status,
            request,
            tuple(self.output_dir / f.path for f in records),
            error,
            False,
            request.line,
            record,
        )
        return record, outcome

    def _interrupted_record(self, item: _Item) -> ManifestRecord | None:
        """What to record for an item cancelled mid-way, so a resume never pays twice."""
        if item.response is not None:
            pending = [PendingImage(i.index, i.url, i.revised_prompt) for i in item.response.images]
            error = XAIImagesError("interrupted while saving; retry downloads the images")
            return self._finish(item, "failed", error=error, pending=pending, billed=True)[0]
        if item.sent and not item.download_only:
            error = OutcomeUnknownError(
                "interrupted after the request was sent: it may have been billed",
                reason="cancelled",
            )
            return self._finish(item, "unknown", error=error)[0]
        return None


def _relative(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.as_posix()


# The engine behind ``AsyncClient.batch`` (which documents every argument):
# ``run_batch(client, requests, ...)`` is ``client.batch(requests, ...)``.
run_batch = BatchRun
