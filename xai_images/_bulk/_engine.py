"""The bulk engine: one job, many items, one outcome each, resumable; two sources of results.

`Engine` owns everything a bulk job does whatever answers its requests: reading the job source
(lazily, a few lines at a time), validating and naming items, the manifest, the one resume rule
(`decide_resume`), per-item state (only for items in flight), counting and events, saving
images, downloading again what an earlier run paid for, the spending seam (`_spend.py`), run
control (iteration, `stop`, `aclose`) and teardown. A *source* subclasses it and provides
`Engine._produce`: ``_source_realtime.py`` sends each item as its own API request,
``_source_batchapi.py`` puts the items into one xAI batch and collects its results.

The data path of one item: job line -> `Engine._jobs` -> `Engine._admit` (name, validate,
resume decision from the manifest index) -> the source sends it and gets an answer ->
`Engine._save_images` -> `Engine._finish` (its manifest record and `Outcome`) ->
`Engine._settle` (written, counted, told to ``on_event``, yielded).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .._api._models import GeneratedImage
from .._api._requests import Request
from .._config import int_at_least
from .._errors import DownloadError, ImageExpiredError, ValidationError, XAIImagesError
from .._results._files import safe_component
from .._results._local import LocalDirectory
from ._budget import Budget, open_budget, parse_max_cost
from ._jobs import Job, Source, chunked, iter_source
from ._jobstate import Found, JobState, load_job_state
from ._manifest import (
    FileRecord,
    ItemStatus,
    ManifestRecord,
    ManifestWriter,
    PendingImage,
    read_manifest,
)
from ._naming import _Names, name_job
from ._outcome import Outcome
from ._progress import Progress, ProgressEvent
from ._resume import ResumeOptions, decide_resume
from ._spend import NO_SPEND, BudgetSpend, Spend
from ._store_job import locate
from ._tally import Item, Tally

if TYPE_CHECKING:
    from .._api._batches import Batches
    from .._api._images import Images
    from .._hooks import EventHook
    from .._results._files import OnExists, SavedImage
    from .._results._output import Output
    from .._results._transfers import Transfers
    from .._wire._shared_budget import SharedLedger
    from ._signed_job import SignedJob

__all__ = [
    "BulkClient",
    "Engine",
    "check_run_options",
    "outcome_of",
]

logger = logging.getLogger("xai_images")

_E = TypeVar("_E", bound="Engine")
_LOOKUP_BATCH = 256  # items whose earlier records one trip to a worker thread reads


class BulkClient(Protocol):
    """What the engine and its sources use of a client (``AsyncClient`` is one); its
    `Transfers` come through `requester_of`."""

    @property
    def images(self) -> Images: ...

    @property
    def batches(self) -> Batches: ...

    def add_event_hook(self, hook: EventHook) -> None: ...

    def remove_event_hook(self, hook: EventHook) -> None: ...


def outcome_of(
    record: ManifestRecord,
    request: Request,
    status: ItemStatus,
    error: BaseException | None,
    output_dir: Path | None,
    *,
    skipped: bool = False,
) -> Outcome:
    """The `Outcome` of an item whose manifest record is ``record`` (``output_dir``: ``None``
    for a job into an object store, whose outcomes name no local files)."""
    paths = () if output_dir is None else tuple(output_dir / f.path for f in record.files)
    return Outcome(record.id, status, request, paths, error, skipped, request.line, record)


def check_run_options(concurrency: object, on_exists: object) -> None:
    """Check the options every bulk run takes, before anything starts.

    Raises:
        ValidationError: ``concurrency`` is not an int >= 1, or ``on_exists`` is unknown.
    """
    if not int_at_least(concurrency, 1):
        raise ValidationError("concurrency", concurrency, "an int >= 1")
    if on_exists not in ("fail", "overwrite", "skip"):
        raise ValidationError("on_exists", on_exists, "one of 'fail', 'overwrite', 'skip'")


class _Failure:
    """What ended a producer, for the consumer to raise."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


_DONE = object()


async def _produce(work: Callable[[], Awaitable[None]], put: Callable[[Any], None]) -> None:
    try:
        await work()
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        put(_Failure(exc))
        return
    put(_DONE)


class Engine:
    """A running bulk job: iterate it for outcomes as items finish (base of both sources).

    Attributes:
        progress: live counters (also carried by every event).
        output_dir: where images, the manifest and the gallery go (made absolute); for a job
            into an object store, the local directory of its manifest.
        target: where the images go: the output directory, or the object-store URL.
        manifest_path: the manifest file.
    ``max_cost`` (USD) puts a `Budget` behind the spending seam; ``spend`` is any other
    `Spend` (tests, callers with their own accounting).
    """

    def __init__(
        self,
        client: BulkClient,
        requests: Source,
        *,
        output_dir: str | os.PathLike[str] | Output,
        manifest: str | os.PathLike[str] | None = None,
        concurrency: int = 16,
        retry_failed: bool = False,
        resend_unknown: bool = False,
        on_event: Callable[[ProgressEvent], None] | None = None,
        on_exists: OnExists = "overwrite",
        verify_sha256: bool = False,
        max_cost: object = None,
        budget_name: str | None = None,
        spend: Spend | None = None,
        progress: Progress | None = None,
    ) -> None:
        check_run_options(concurrency, on_exists)
        limit = None if max_cost is None else parse_max_cost(max_cost)
        self._stop = asyncio.Event()
        self._agen: AsyncIterator[Outcome] | None = None
        self._closed = False
        from .._api._client import requester_of  # loaded already: a client exists

        self._client = client
        self._transfers: Transfers = requester_of(client).transfers
        self._requests = requests
        # Resolved once, so Outcome.files are absolute as documented and a later chdir cannot
        # move the job.
        self._store, self.target, self.output_dir, self.manifest_path = locate(output_dir, manifest)
        self._files_root = None if self._store is not None else self.output_dir
        self._concurrency = concurrency
        self._resume = ResumeOptions(retry_failed=retry_failed, resend_unknown=resend_unknown)
        self._on_exists: OnExists = on_exists
        self._verify = verify_sha256
        self._spend: Spend = spend if spend is not None else NO_SPEND
        self._tally = Tally(on_event, progress)
        self.progress = self._tally.progress
        self.progress.max_cost_ticks = limit
        self._max_cost = max_cost
        self._budget_name = budget_name
        self._budget: Budget | None = None  # max_cost, opened when the run starts
        self._shared_ledger: SharedLedger | None = None
        self._emit = self._tally.emit
        self._writer: ManifestWriter | None = None
        self._output: Output | None = None  # where the images go: the output directory
        self._out: Callable[[Any], None] = lambda _x: None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- what a source provides ------------------------------------------------------------------

    async def _produce(self, state: JobState) -> None:
        """Run every item of the job (``state``: what the manifest says of earlier runs)."""
        raise NotImplementedError

    def _on_client_event(self, event: Any) -> None:
        """Count the client events (retries, 429s) that belong to this run."""
        self._tally.on_client_event(event)

    def _record(self, item: Item, status: ItemStatus, **fields: Any) -> ManifestRecord:
        """The manifest record of ``item`` ending with ``status``."""
        raise NotImplementedError

    # -- run control -----------------------------------------------------------------------------

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

    def __aiter__(self: _E) -> _E:
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

    async def __aenter__(self: _E) -> _E:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def collect(self) -> list[Outcome]:
        """Run to the end and return every outcome, in finishing order."""
        async with self:
            return [outcome async for outcome in self]

    # -- the run ---------------------------------------------------------------------------------

    async def _run(self) -> AsyncIterator[Outcome]:
        state = await asyncio.to_thread(load_job_state, self.manifest_path)
        try:
            await self._open_budget()
            # Checked writable (and created) before anything is sent or paid for.
            target = self.output_dir if self._store is None else self._store.target
            self._output = await self._transfers.output(target, field="output_dir")
            writer = self._writer = ManifestWriter(self.manifest_path)
            await writer.open()
        except BaseException:
            state.close()
            await self._close_budget()
            raise
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._out = queue.put_nowait
        # The run hears of retries and 429s through the client's public event hooks.
        self._client.add_event_hook(self._on_client_event)
        producer = asyncio.ensure_future(_produce(lambda: self._produce(state), self._out))
        try:
            while (got := await queue.get()) is not _DONE:
                if isinstance(got, _Failure):
                    raise got.error
                yield got
        finally:
            pending = [t for t in (producer, *self._tasks, *self._more_tasks()) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
            if not producer.cancelled() and producer.done():
                producer.exception()  # retrieved; raised above when relevant
            self._client.remove_event_hook(self._on_client_event)
            state.close()
            await writer.aclose()
            if self._store is not None:
                await self._store.finish(self._output)
            await self._close_budget()
            self.progress.finish()
            self._emit("finished", None)

    async def _open_budget(self) -> None:
        """With ``max_cost``: read the price table, count what earlier runs spent (streaming
        the manifest), and put the `Budget` behind the spending seam."""
        limit = self.progress.max_cost_ticks
        if limit is None:
            return
        self._budget, self._shared_ledger = await open_budget(
            self._client,  # type: ignore[arg-type]  # uses images.models and the shared limit
            self._max_cost,
            limit,
            read_manifest(self.manifest_path),
            name=self._budget_name or (self.target if self._store else self.output_dir.name),
        )
        self._spend = BudgetSpend(self._budget, self.progress, wait=self._budget_waits)
        self.progress.spent_in_usd_ticks = await self._budget.spent()

    _signed: SignedJob | None = None  # with upload_urls (set by a source)

    _budget_waits = True  # reserve waits for requests in flight to settle before refusing

    async def _close_budget(self) -> None:
        if self._budget is not None:
            self.progress.spent_in_usd_ticks = await self._budget.spent()
        shared, self._shared_ledger = self._shared_ledger, None
        if shared is not None:
            await shared.aclose()

    def _budget_reached(self, reason: str) -> None:
        """The spending seam refused a request: start nothing new (not an interruption)."""
        if not self.progress.budget_reached:
            logger.warning("xai-images batch: sending no more requests: %s", reason)
        self.progress.budget_reached = True
        self._stop.set()

    def _more_tasks(self) -> Iterable[asyncio.Future[Any]]:
        """A source's own tasks to cancel at teardown."""
        return ()

    def _jobs(self) -> AsyncIterator[Job]:
        """The job source, read lazily (see `iter_source`)."""
        return iter_source(self._requests)

    async def _admitted(
        self, names: _Names, state: JobState, *, check_attached: Any = None, until: Any = None
    ) -> AsyncIterator[Item | tuple[Item, ManifestRecord]]:
        """Count, validate and name the jobs, and decide from the manifest what to do with each.

        Yields each `Item` to run, and ``(item, earlier record)`` for an item whose paid images
        are to be downloaded again; invalid and skipped items end here (their outcomes are out).
        ``check_attached(item, earlier)`` (a source's) returns ``True`` for an item the source
        takes over as it is (no resume decision); ``until()`` true ends the reading. Earlier
        records (and, in a local directory, the sizes of their files) are read in a worker
        thread, up to `_LOOKUP_BATCH` items per trip, never on the event loop.
        """
        trickle = isinstance(self._requests, AsyncIterable) or not len(state)
        async for jobs in chunked(self._jobs(), 1 if trickle else _LOOKUP_BATCH):
            named = [name_job(job, names, self.progress.total + n) for n, job in enumerate(jobs, 1)]
            ids = [one[0] for one in named if not isinstance(one, Outcome)]
            quick = not self._verify and isinstance(self._output, LocalDirectory)
            found = (
                await asyncio.to_thread(state.lookup, ids, self.output_dir if quick else None)
                if ids and len(state)
                else {}
            )
            for one in named:
                if until is not None and until():
                    return
                self.progress.total += 1
                if isinstance(one, Outcome):
                    self._fail_unread(one)
                    continue
                admitted = await self._admit(Item(*one, self._tally), found, check_attached)
                if admitted is not None:
                    yield admitted

    async def _admit(
        self,
        item: Item,
        looked_up: Mapping[str, Found],
        check_attached: Any,
    ) -> Item | tuple[Item, ManifestRecord] | None:
        """The resume decision for one named item (see `_admitted`); ``None``: it ended."""
        found, intact_hint = looked_up.get(item.id, (None, None))
        if check_attached is not None and check_attached(item, found):
            return item
        if found is not None and found[1].request == item.request.to_json():
            earlier = found[1]
            intact = earlier.status == "ok" and (
                intact_hint if intact_hint is not None else await self._intact(earlier)
            )
            decision = decide_resume(earlier, self._resume, files_intact=intact)
            if decision.action == "download":
                return item, earlier
            if decision.action == "skip":
                self.progress.skipped += 1
                self._emit("skipped", item.id, status=earlier.status, line=item.request.line)
                status: Any = earlier.status
                self._out(
                    outcome_of(
                        earlier,
                        item.request,
                        status,
                        decision.error,
                        self._files_root,
                        skipped=True,
                    )
                )
                return None
            if earlier.status == "ok":
                logger.info(
                    "%s: recorded ok but its files are missing or changed; running it", item.id
                )
        return item

    async def _intact(self, record: ManifestRecord) -> bool:
        """Whether the images of an ``ok`` record are intact in the output (`Output.verify`).

        In a local directory without ``verify_sha256`` the sizes are checked, not the hashes
        (today's resume speed for big jobs); everywhere else the target verifies each image.
        """
        output = self._output
        assert output is not None
        if not record.files:
            return False
        if not self._verify and isinstance(output, LocalDirectory):
            return record.files_intact(self.output_dir)
        if self._store is not None:
            return len(await self._store.kept(output, record.files)) == len(record.files)
        for f in record.files:
            if not await output.verify(f.path, size=f.bytes, sha256=f.sha256):
                return False
        return True

    def _fail_unread(self, outcome: Outcome) -> None:
        """An item that could not be read or validated: failed, not recorded."""
        self.progress.failed += 1
        self._emit("failed", outcome.id, status="failed", error=outcome.error, line=outcome.line)
        self._out(outcome)

    # -- ending items ----------------------------------------------------------------------------

    def _finish(
        self, item: Item, status: ItemStatus, **fields: Any
    ) -> tuple[ManifestRecord, Outcome]:
        """The manifest record and outcome of ``item`` ending with ``status`` (``fields``: the
        record's: error, files, pending, billed, note, keep, cost)."""
        record = self._record(item, status, **fields)
        if self._store is not None:
            record = self._store.with_spills(record, fields.get("files", ()))
        return record, outcome_of(
            record, item.request, status, fields.get("error"), self._files_root
        )

    async def _settle(self, record: ManifestRecord, outcome: Outcome) -> None:
        """Record an item that ended, count it, tell ``on_event``, and yield its outcome."""
        assert self._writer is not None
        await self._writer.write(record)
        self._tally.count(outcome)
        self._out(outcome)

    # -- saving ----------------------------------------------------------------------------------

    async def _save_images(
        self, item: Item, images: Sequence[GeneratedImage]
    ) -> tuple[list[SavedImage], list[PendingImage], list[BaseException]]:
        """Store an item's images in the output as ``{id}-{index}.{ext}`` (the one place both
        sources save); split what was saved, what is left to fetch again later, and the errors;
        count what was saved."""
        if self._signed is not None:  # xAI uploaded them through signed URLs
            return await self._signed.saved(item, images, self._output, self.progress)  # type: ignore[arg-type]
        saving = self._tally.saving
        output = self._output
        assert output is not None
        store = self._transfers.store
        for image in images:
            saving[id(image)] = item  # download retries name the image as their origin
        try:
            results = await asyncio.gather(
                *(
                    store(
                        image,
                        output,
                        safe_component(f"{item.id}-{image.index}"),
                        on_exists=self._on_exists,
                    )
                    for image in images
                ),
                return_exceptions=True,
            )
        finally:
            for image in images:
                saving.pop(id(image), None)
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
        if self._store is not None and errors:
            saved, pending, errors = await self._store.spill(
                self._transfers, item, images, results, saved, pending, errors
            )
        self.progress.images += len(saved)
        self.progress.bytes += sum(s.bytes for s in saved if not s.skipped)
        return saved, pending, errors

    async def _download_again(
        self, item: Item, earlier: ManifestRecord, *, expired: ItemStatus, regenerate: bool
    ) -> tuple[ManifestRecord, Outcome] | None:
        """Fetch the images an earlier run paid for from their recorded URLs (no new request).

        Returns the item's record and outcome; ``None`` when every URL expired and
        ``regenerate`` (the source can send the item again, and ``resend_unknown`` allows
        paying again) says to generate it afresh. An item whose URLs all expired otherwise ends
        with status ``expired`` and nothing left to fetch.
        """
        images = [
            GeneratedImage(
                url=p.url,
                revised_prompt=p.revised_prompt,
                index=p.index,
                request_id=earlier.request_id,
                transfers=self._transfers,
            )
            for p in earlier.pending
            if p.url
        ]
        saved, pending, errors = await self._save_images(item, images)
        if self._store is not None:
            assert self._output is not None
            kept = await self._store.kept(self._output, earlier.files)
        else:
            kept = await asyncio.to_thread(_kept, earlier.files, self.output_dir)
        status: ItemStatus = "failed" if errors else "ok"
        if errors and all(isinstance(e, ImageExpiredError) for e in errors):
            if regenerate and self._resume.resend_unknown:
                return None
            status, pending = expired, []  # expired for good: a retry must not try them again
        error = errors[0] if errors else None
        return self._finish(
            item,
            status,
            error=error,
            files=saved,
            pending=pending,
            billed=True,
            keep=kept,
            cost=earlier.cost_in_usd_ticks,
        )

    async def _drain(self) -> None:
        """Wait for the item tasks; raise what escaped one (the manifest cannot be written)."""
        while self._tasks:
            tasks = list(self._tasks)
            results = await asyncio.gather(*tasks, return_exceptions=True)
            # Removed here, not only by their done callbacks: gathering tasks that are all done
            # already may not yield to the loop (3.12), so the callbacks would never run.
            self._tasks.difference_update(tasks)
            for result in results:
                if isinstance(result, Exception):
                    raise result


def _kept(files: Sequence[FileRecord], output_dir: Path) -> list[FileRecord]:
    """The files of an earlier record still on disk."""
    return [f for f in files if (output_dir / f.path).is_file()]
