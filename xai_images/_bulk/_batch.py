"""The bulk engine: many generate/edit requests in, one outcome per item out, resumable.

``run_batch(client, requests, output_dir=...)`` (also ``client.bulk(...)``) runs every request
with at most ``concurrency`` API requests in flight (the client's rate limiter spaces their
starts), saves each image as ``{id}-{index}.{ext}``, appends a manifest line per finished item
and yields an `Outcome` as each item finishes. One item failing never stops the others.

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
import functools
import logging
import os
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._api._models import GeneratedImage, ImagesResponse
from .._api._requests import EditRequest, GenerateRequest, Request
from .._errors import (
    APIConnectionError,
    APIError,
    APIResponseError,
    ImageBlockedError,
    ImageExpiredError,
    OutcomeUnknownError,
    ValidationError,
    XAIImagesError,
)
from .._results._files import safe_component
from ._budget import Budget, Reservation, open_budget, parse_max_cost
from ._bulkcommon import (
    RunControl,
    check_run_options,
    next_outcome,
    pending_images,
    produce,
    run_paths,
    sort_saves,
)
from ._jobs import InvalidJob, derive_id, load_jobs, parse_job
from ._manifest import ItemStatus, ManifestRecord, ManifestWriter, PendingImage, load_manifest
from ._outcome import Outcome
from ._progress import ProgressEvent
from ._records import interrupted_record, item_record
from ._resume import ResumeOptions, decide_resume
from ._tally import Item, Tally

if TYPE_CHECKING:
    from .._api._client import CoreClient
    from .._results._files import OnExists, SavedImage

__all__ = ["BatchRun", "Outcome", "name_job", "outcome_of", "run_batch"]

logger = logging.getLogger("xai_images")


# -- the engine -----------------------------------------------------------------------------------


class _NotStarted(Exception):
    """The run was stopped while the item waited for a request slot."""


Job = Request | InvalidJob | Mapping[str, Any]
Source = str | os.PathLike[str] | Iterable[Job] | AsyncIterable[Job]


class BatchRun(RunControl):
    """A running bulk job: iterate it for outcomes as items finish.

    Prefer ``async with client.bulk(...) as run: async for outcome in run: ...`` so that
    leaving the loop early stops the workers and closes the manifest at once. Created by
    `run_batch`; nothing starts before the first iteration.

    Attributes:
        progress: live counters (also carried by every event).
        output_dir: where images, the manifest and the gallery go (made absolute).
        manifest_path: the manifest file.
    """

    def __init__(
        self,
        client: CoreClient,
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
        max_cost: object = None,
        budget_name: str | None = None,
    ) -> None:
        check_run_options(concurrency, on_exists)
        limit = None if max_cost is None else parse_max_cost(max_cost)
        super().__init__()
        self._max_cost = max_cost
        self._budget_name = budget_name
        self._client = client
        self._requests = requests
        self.output_dir, self.manifest_path = run_paths(output_dir, manifest)
        self._concurrency = concurrency
        self._resume = ResumeOptions(retry_failed=retry_failed, resend_unknown=resend_unknown)
        self._on_exists: OnExists = on_exists
        self._verify = verify_sha256
        self._tally = Tally(on_event)
        self.progress = self._tally.progress
        self.progress.max_cost_ticks = limit
        self._budget: Budget | None = None

    def __repr__(self) -> str:
        return f"<BatchRun output_dir={str(self.output_dir)!r} {self.progress!r}>"

    # -- internals -------------------------------------------------------------------------------

    async def _run(self) -> AsyncIterator[Outcome]:
        prior = await asyncio.to_thread(load_manifest, self.manifest_path)
        shared = None
        if self.progress.max_cost_ticks is not None:
            self._budget, shared = await open_budget(
                self._client,
                self._max_cost,
                self.progress.max_cost_ticks,
                prior.values(),
                name=self._budget_name or self.output_dir.name,
            )
            self.progress.spent_in_usd_ticks = await self._budget.spent()
        await asyncio.to_thread(self.output_dir.mkdir, parents=True, exist_ok=True)
        writer = ManifestWriter(self.manifest_path)
        await writer.open()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        tasks: set[asyncio.Task[None]] = set()
        # The run hears of retries and 429s through the client's public event hooks; it tells
        # its own items apart by the origin each event carries.
        self._client.add_event_hook(self._tally.on_client_event)
        feed = functools.partial(self._feed, prior, writer, queue, tasks)
        producer = asyncio.ensure_future(produce(feed, queue.put_nowait))
        try:
            while (outcome := await next_outcome(queue)) is not None:
                yield outcome
        finally:
            pending = [t for t in (producer, *tasks) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
            if not producer.cancelled() and producer.done():
                producer.exception()  # retrieved; raised above by next_outcome when relevant
            self._client.remove_event_hook(self._tally.on_client_event)
            await writer.aclose()
            if self._budget is not None:
                self.progress.spent_in_usd_ticks = await self._budget.spent()
            if shared is not None:
                await shared.aclose()
            self.progress.finish()
            self._tally.emit("finished", None)

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

    async def _feed(
        self,
        prior: dict[str, ManifestRecord],
        writer: ManifestWriter,
        queue: asyncio.Queue[Any],
        tasks: set[asyncio.Task[None]],
    ) -> None:
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
                    self._tally.emit(
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

    def _accept(
        self,
        source_job: Job,
        ids: set[str],
        repeats: dict[str, int],
        prior: dict[str, ManifestRecord],
    ) -> Item | Outcome:
        """Validate and name a job, and decide from the manifest whether it runs."""
        named = name_job(source_job, ids, repeats, self.progress.total)
        if isinstance(named, Outcome):
            return named
        item_id, job = named
        item = Item(item_id, job, self._tally)
        earlier = prior.get(item_id)
        if earlier is not None and earlier.request == job.to_json():
            decision = self._resume_decision(item, earlier)
            if decision is not None:
                self.progress.skipped += 1
                self._tally.emit("skipped", item_id, status=decision.status, line=job.line)
                return decision
        self._tally.emit("queued", item_id, line=job.line)
        return item

    def _resume_decision(self, item: Item, earlier: ManifestRecord) -> Outcome | None:
        """``None`` to run the item; else the outcome of skipping it."""
        intact = earlier.status == "ok" and earlier.files_intact(
            self.output_dir, check_sha256=self._verify
        )
        decision = decide_resume(earlier, self._resume, files_intact=intact)
        if decision.action == "download":
            item.prior = earlier
            item.download_only = True
            return None
        if decision.action == "run":
            if earlier.status == "ok":
                logger.info(
                    "%s: recorded ok but its files are missing or changed; running it", item.id
                )
            return None
        request = item.request
        files = tuple(self.output_dir / f.path for f in earlier.files)
        status: Any = earlier.status
        return Outcome(item.id, status, request, files, decision.error, True, request.line, earlier)

    async def _run_item(
        self,
        item: Item,
        writer: ManifestWriter,
        queue: asyncio.Queue[Any],
        request_slots: asyncio.Semaphore,
        item_slots: asyncio.Semaphore,
    ) -> None:
        record: ManifestRecord | None = None
        try:
            try:
                record, outcome = await self._process(item, request_slots)
            except _NotStarted:
                return
            except asyncio.CancelledError:
                record = interrupted_record(item, self.output_dir)
                if record is not None:
                    await asyncio.shield(writer.write(record))
                raise
            except Exception as exc:  # a bug must not take the other items down
                logger.exception("xai-images batch: item %s failed unexpectedly", item.id)
                record, outcome = self._finish(item, "failed", error=exc)
            await writer.write(record)
        finally:
            item_slots.release()
        self._tally.count(outcome)
        queue.put_nowait(outcome)

    async def _process(
        self, item: Item, request_slots: asyncio.Semaphore
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
            budget = self._budget
            reservation: Reservation | None = None
            if budget is not None:
                try:
                    reservation = await budget.reserve(item.request)
                except ValidationError as exc:  # a model the price table does not list
                    return self._finish(item, "failed", error=exc)
                if reservation is None:
                    # It could take the spend past max_cost: not sent, not recorded (resumable).
                    self.progress.budget_reached = True
                    self._stop.set()  # no new item starts; not an interruption
                    raise _NotStarted
            self.progress.started += 1
            self._tally.emit("started", item.id, line=item.request.line)
            try:
                response = await self._send(item)
            except OutcomeUnknownError as exc:
                if budget is not None and reservation is not None:
                    await budget.settle(reservation, None)  # maybe billed: count it
                return self._finish(item, "unknown", error=exc)
            except (APIError, ValidationError, XAIImagesError) as exc:
                if budget is not None and reservation is not None:
                    if isinstance(exc, APIResponseError):  # answered 2xx: maybe billed
                        await budget.settle(reservation, None)
                    else:  # refused, or never reached the server
                        await budget.release(reservation)
                if isinstance(exc, APIConnectionError) and self.progress.generated == 0:
                    # Nothing got through yet: the API is unreachable, stop instead of failing
                    # every item one by one. The others are not recorded, so a re-run resumes.
                    logger.error("xai-images batch: stopping, the API is unreachable: %s", exc)
                    self.stop()
                return self._finish(item, "failed", error=exc)
            except BaseException:
                if budget is not None and reservation is not None:
                    await asyncio.shield(budget.settle(reservation, None))  # maybe sent
                raise
        item.response = response
        self.progress.generated += 1
        ticks = response.usage.cost_in_usd_ticks if response.usage else None
        self.progress.cost_in_usd_ticks += ticks or 0
        if budget is not None and reservation is not None:
            if item.request.model is None:
                budget.learn_default_model(response.model)
            await budget.settle(reservation, ticks)
            self.progress.spent_in_usd_ticks = await budget.spent()
        images = response.images
        self._tally.emit("generated", item.id, images=len(images), line=item.request.line)
        if not images:
            blocked = ImageBlockedError(
                f"all {response.blocked_count or 'requested'} image(s) were withheld by moderation"
            )
            return self._finish(item, "blocked", error=blocked, billed=bool(ticks))
        saved, pending, errors = await self._save_images(item, images)
        note = None
        if response.blocked_count:
            note = f"{response.blocked_count} image(s) withheld by moderation"
        if errors:
            return self._finish(
                item, "failed", error=errors[0], files=saved, pending=pending, billed=True
            )
        return self._finish(item, "ok", files=saved, billed=True, note=note)

    async def _send(self, item: Item) -> ImagesResponse:
        """Send the item's request once (with the client's retries), naming the item as origin."""
        return await self._client.images.send(item.request, origin=item)

    async def _save_images(
        self, item: Item, images: Sequence[GeneratedImage]
    ) -> tuple[list[SavedImage], list[PendingImage], list[BaseException]]:
        for image in images:
            self._tally.saving[id(image)] = item
        try:
            results = await asyncio.gather(
                *(
                    image.save(
                        self.output_dir / safe_component(f"{item.id}-{image.index}"),
                        on_exists=self._on_exists,
                    )
                    for image in images
                ),
                return_exceptions=True,
            )
        finally:
            for image in images:
                self._tally.saving.pop(id(image), None)
        return sort_saves(images, results, self.progress)

    async def _download_pending(self, item: Item) -> tuple[ManifestRecord, Outcome] | None:
        """Fetch the images of an earlier billed item again; ``None`` to generate afresh."""
        prior = item.prior
        assert prior is not None
        self._tally.emit("started", item.id, line=item.request.line)
        images = pending_images(prior, self._client._transfers, prior.request_id)
        saved, pending, errors = await self._save_images(item, images)
        kept = [f for f in prior.files if (self.output_dir / f.path).is_file()]
        if errors and all(isinstance(e, ImageExpiredError) for e in errors):
            if self._resume.resend_unknown:
                item.download_only = False
                return None
            pending = []  # expired for good: a later retry must not try them again
        status: ItemStatus = "failed" if errors else "ok"
        error = errors[0] if errors else None
        return self._finish(
            item, status, error=error, files=saved, pending=pending, billed=True, keep=kept
        )

    def _finish(
        self, item: Item, status: ItemStatus, **fields: Any
    ) -> tuple[ManifestRecord, Outcome]:
        # ``fields``: item_record's keywords (error, files, pending, billed, note, keep).
        record = item_record(item, status, self.output_dir, **fields)
        error = fields.get("error")
        return record, outcome_of(record, item.request, status, error, self.output_dir)


def name_job(
    job: Any, ids: set[str], repeats: dict[str, int], number: int
) -> tuple[str, Request] | Outcome:
    """Validate a job of either bulk engine and name it, or return its failed outcome.

    The id is the job's own (unique within the job) or derived from its content, the same
    request again getting ``-2``, ``-3``, ... in job order; it is added to ``ids``. ``number``
    (the job's position) names a job that has neither id nor line.
    """
    if isinstance(job, Mapping):
        try:
            job = parse_job(job)
        except ValidationError as exc:
            job = InvalidJob(None, exc)
    if isinstance(job, InvalidJob):
        name = f"line-{job.line}" if job.line is not None else f"item-{number}"
        return Outcome(name, "failed", error=job.error, line=job.line)
    if not isinstance(job, (GenerateRequest, EditRequest)):
        error = ValidationError("request", job, "a GenerateRequest, EditRequest or dict")
        return Outcome(f"item-{number}", "failed", error=error)
    try:
        job.validate()
    except ValidationError as exc:
        return Outcome(job.id or f"item-{number}", "failed", job, error=exc, line=job.line)
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
    return item_id, job


def outcome_of(
    record: ManifestRecord,
    request: Request,
    status: ItemStatus,
    error: BaseException | None,
    output_dir: Path,
) -> Outcome:
    """The `Outcome` of an item whose manifest record is ``record``."""
    paths = tuple(output_dir / f.path for f in record.files)
    return Outcome(record.id, status, request, paths, error, False, request.line, record)


# The engine behind ``AsyncClient.bulk`` (which documents every argument):
# ``run_batch(client, requests, ...)`` is ``client.bulk(requests, ...)``.
run_batch = BatchRun
