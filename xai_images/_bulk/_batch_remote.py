"""Bulk jobs through xAI's Batch API: ``client.bulk(..., via="batch-api")``.

The same job sources, request objects, manifest, outcomes and progress as the real-time engine
(``_batch.py``), but the requests go into one server-side batch: they do not count towards the
real-time rate limit, and nothing has to stay running while xAI works.

1. Every item is read and validated (its request body built, the size limit checked) before
   anything is created or added; bad items become ``failed`` outcomes.
2. A run id is recorded, the batch (named after it) created, its id recorded; requests are
   added in calls under the size and rate limits, each call recorded before and after
   (``_remote_state.py`` lists the records). A resumed run attaches to the recorded batch,
   lists its requests to settle any add in doubt, and sends only what is missing.
3. While the batch runs, results are read page by page (polling with backoff) and each image
   is saved as soon as its result appears, through the same result layer as real-time images
   (streamed, atomic, sha256, sniffed extension); its URLs expire an hour after the request
   finished. Errors become ``failed`` outcomes with the server's code and message, moderated
   requests ``blocked``, URLs that expired before they were fetched ``expired``.

Stopping (``stop()``, Ctrl-C) never cancels the remote batch: running the job again attaches
to it and saves the rest. ``cancel=True`` cancels it, then saves what finished.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from .._errors import (
    APIStatusError,
    NotFoundError,
    ValidationError,
    XAIImagesError,
)
from .._hooks import RateLimited, RetryScheduled
from ._batch import BatchRun, Outcome, name_job
from ._budget import Budget, Reservation, open_budget, parse_max_cost
from ._bulkcommon import (
    EventEmitter,
    RunControl,
    check_run_options,
    next_outcome,
    produce,
    run_paths,
)
from ._jobs import load_jobs
from ._manifest import ManifestRecord, ManifestWriter
from ._progress import ProgressEvent
from ._remote_results import ResultsMixin
from ._remote_state import (
    Item,
    JobState,
    RemoteProgress,
    RunState,
    load_job_state,
)

if TYPE_CHECKING:
    from .._api._client import CoreClient
    from .._results._files import OnExists
    from ._batch import Source

__all__ = ["BatchAPI", "RemoteBatchRun", "engine"]

logger = logging.getLogger("xai_images")
_KEEP_ENTRY = 64 * 1024  # encoded bodies above this (edits with inline images) are rebuilt later
_DOWNLOAD = object()


def _seconds(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValidationError(attribute.name, value, "a number of seconds > 0")


@attrs.frozen
class BatchAPI:
    """How ``client.bulk(..., via=BatchAPI(...))`` runs a job through xAI's Batch API.

    ``via="batch-api"`` is ``via=BatchAPI()``.

    Attributes:
        detach: submit everything, record it in the manifest, and end without waiting;
            ``run.batch_id`` says which batch. Running the same job again attaches to it.
        wait: ``False``: save the results already there, then end.
        cancel: cancel the recorded batch (submitting nothing new), then save what finished.
        poll_interval: first wait between polls, in seconds; it grows by half while nothing
            arrives, up to ``max_poll_interval``.
        max_poll_interval: the longest wait between polls.
    """

    detach: bool = False
    wait: bool = True
    cancel: bool = False
    poll_interval: float = attrs.field(default=2.0, validator=_seconds)
    max_poll_interval: float = attrs.field(default=30.0, validator=_seconds)


def engine(via: object) -> Callable[..., BatchRun | RemoteBatchRun]:
    """The bulk engine ``client.bulk(..., via=...)`` builds: ``BatchRun`` for ``"realtime"``,
    a ``RemoteBatchRun`` with the options of a :class:`BatchAPI` (or ``"batch-api"``).

    Raises:
        ValidationError: ``via`` is none of those.
    """
    if via == "realtime":
        return BatchRun
    options = BatchAPI() if via == "batch-api" else via
    if not isinstance(options, BatchAPI):
        raise ValidationError("via", via, "'realtime', 'batch-api' or a BatchAPI")
    return functools.partial(RemoteBatchRun, **attrs.asdict(options))


class RemoteBatchRun(ResultsMixin, RunControl):
    """A bulk job through the Batch API: iterate it for outcomes as results are saved.

    Built by ``client.bulk(..., via="batch-api")``, which documents the arguments; nothing
    starts before the first iteration. Use ``async with ... as run: async for outcome in run``
    or ``await run.collect()``.

    Attributes:
        progress: live counters, with the server's (``RemoteProgress``).
        output_dir: where images, the manifest and the gallery go (absolute).
        manifest_path: the manifest, which also holds the run's records.
        run_id: the run's id (the batch's name), once known.
        batch_id: the batch's id, once known.
        detached: the run submitted everything and returned without waiting (``detach``).
        cancelled_by_xai: xAI's message when xAI cancelled the batch itself.
        not_submitted: ids of items left for a later run (they belong in a new batch).
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
        detach: bool = False,
        wait: bool = True,
        cancel: bool = False,
        poll_interval: float = 2.0,
        max_poll_interval: float = 30.0,
        on_poll: Callable[[RemoteProgress], None] | None = None,
        max_cost: object = None,
        budget_name: str | None = None,
    ) -> None:
        check_run_options(concurrency, on_exists)
        limit = None if max_cost is None else parse_max_cost(max_cost)
        for name, value in (
            ("poll_interval", poll_interval),
            ("max_poll_interval", max_poll_interval),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValidationError(name, value, "a number of seconds > 0")
        super().__init__()
        self._client = client
        self._requests = requests
        self.output_dir, self.manifest_path = run_paths(output_dir, manifest)
        self._concurrency = concurrency
        self._retry_failed = retry_failed
        self._resend_unknown = resend_unknown
        self._on_exists: OnExists = on_exists
        self._verify = verify_sha256
        self._detach = detach
        self._wait = wait
        self._cancel = cancel
        self._poll = (float(poll_interval), float(max(poll_interval, max_poll_interval)))
        self._on_poll = on_poll
        self.progress = RemoteProgress()
        self.progress.max_cost_ticks = limit
        self._max_cost = max_cost
        self._budget_name = budget_name
        self._budget: Budget | None = None
        self._reservations: dict[str, Reservation] = {}
        self._emit = EventEmitter(on_event, self.progress).emit
        self.run_id: str | None = None
        self.batch_id: str | None = None
        self.detached = False
        self.cancelled_by_xai: str | None = None
        self.not_submitted: list[str] = []
        self._writer: ManifestWriter | None = None
        self._out: Callable[[Any], None] = lambda _x: None
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(concurrency)
        self._downloads: list[tuple[Item, ManifestRecord]] = []
        self._settled: set[str] = set()
        self._adders: list[asyncio.Future[None]] = []

    def __repr__(self) -> str:
        return f"<RemoteBatchRun batch_id={self.batch_id!r} {self.progress!r}>"

    # -- control (as BatchRun) -------------------------------------------------------------------

    def stop(self) -> None:
        """Stop polling; saves in flight finish and are recorded. The batch is not cancelled."""
        super().stop()

    # -- the run ---------------------------------------------------------------------------------

    async def _run(self) -> AsyncIterator[Outcome]:
        state = await asyncio.to_thread(load_job_state, self.manifest_path)
        shared = None
        if self.progress.max_cost_ticks is not None:
            self._budget, shared = await open_budget(
                self._client,
                self._max_cost,
                self.progress.max_cost_ticks,
                (record for _line, record in state.items.values()),
                name=self._budget_name or self.output_dir.name,
            )
            self.progress.spent_in_usd_ticks = await self._budget.spent()
        await asyncio.to_thread(self.output_dir.mkdir, parents=True, exist_ok=True)
        writer = self._writer = ManifestWriter(self.manifest_path)
        await writer.open()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._out = queue.put_nowait
        # 429s and retries of this run's Batch API calls arrive through the client's hooks.
        self._client.add_event_hook(self._on_client_event)
        producer = asyncio.ensure_future(
            produce(functools.partial(self._produce, state), self._out)
        )
        producer.add_done_callback(lambda _t: None)
        try:
            while (outcome := await next_outcome(queue)) is not None:
                yield outcome
        finally:
            pending = [t for t in (producer, *self._adders, *self._tasks) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
            for task in (producer, *self._adders):
                if not task.cancelled() and task.done():
                    task.exception()  # retrieved; raised above by next_outcome when relevant
            self._client.remove_event_hook(self._on_client_event)
            await writer.aclose()
            if self._budget is not None:
                for reservation in self._reservations.values():  # no result read: maybe billed
                    await self._budget.settle(reservation, None)
                self._reservations.clear()
                self.progress.spent_in_usd_ticks = await self._budget.spent()
            if shared is not None:
                await shared.aclose()
            self.progress.finish()
            self._emit("finished", None)

    def _on_client_event(self, event: Any) -> None:
        path = getattr(event, "path", "")
        if not isinstance(event, (RateLimited, RetryScheduled)) or "/batches" not in path:
            return
        if isinstance(event, RateLimited):
            self.progress.rate_limited += 1
            self._emit("rate_limited", None, delay=event.retry_after)
        else:
            self.progress.retries += 1
            self._emit("retrying", None, delay=event.delay, error=event.error)

    async def _produce(self, state: JobState) -> None:
        await self._work(state)
        await self._drain()

    async def _record(self, kind: str, **fields: Any) -> None:
        assert self._writer is not None
        await self._writer.write_json({"record": kind, **fields}, sync=True)

    async def _work(self, state: JobState) -> None:
        run = state.open_run
        if run is not None and run.batch_id is not None:
            # Settled first, so that ids whose add never landed are submitted again below.
            await self._attach(run)
        attached, to_run = await self._accept_all(state, run)
        if self._downloads:
            await asyncio.gather(*(self._download_again(i, r) for i, r in self._downloads))
        if self._cancel:
            if run is not None and run.batch_id is not None:
                await self._record("cancel", batch_id=run.batch_id)
                await self._client.batches.cancel(run.batch_id)
            self.not_submitted = [item.id for item in to_run]
            to_run = []
        for phase in range(2):
            held = run.intended if run is not None else set()
            open_for_adds = run is None or run.accepts_adds
            fresh = [item for item in to_run if item.id not in held and open_for_adds]
            later = [item for item in to_run if item.id in held or not open_for_adds]
            adding: asyncio.Future[None] | None = None
            if fresh:
                run = await self._open_batch(run)
                # Results are read (and saved) while later calls are still being added.
                adding = asyncio.ensure_future(self._add_items(run, fresh, attached))
                self._adders.append(adding)
            if run is None or run.batch_id is None:
                break
            if self._detach:
                if adding is not None:
                    await adding
                self.detached = True
                self.not_submitted = [item.id for item in later]
                return
            await self._collect(run, attached, adding)
            if not later or not run.closed or self._stop.is_set() or phase == 1:
                self.not_submitted = [item.id for item in later]
                break
            # Items already in the finished batch (retried ones) go into a new batch.
            run, to_run = None, later

    # -- reading and deciding ----------------------------------------------------------------------

    async def _jobs(self) -> AsyncIterator[Any]:
        source = self._requests
        if isinstance(source, (str, os.PathLike)):
            for loaded in await asyncio.to_thread(load_jobs, source):
                yield loaded
        elif hasattr(source, "__aiter__"):
            async for job in source:
                yield job
        else:
            for job in source:
                yield job

    async def _accept_all(
        self, state: JobState, run: RunState | None
    ) -> tuple[dict[str, Item], list[Item]]:
        """Validate every item; return those in the open batch and those to submit."""
        attached: dict[str, Item] = {}
        to_run: list[Item] = []
        ids: set[str] = set()
        repeats: dict[str, int] = {}
        async for job in self._jobs():
            self.progress.total += 1
            item = self._accept(job, ids, repeats)
            if isinstance(item, Outcome):
                self._finish_invalid(item)
                continue
            earlier = state.items.get(item.id)
            line, record = earlier if earlier is not None else (0, None)
            same = record is not None and record.request == item.request.to_json()
            in_run = run is not None and item.id in run.intended
            if in_run and run is not None and (record is None or line < run.line or not same):
                attached[item.id] = item
                self.progress.started += 1
                continue
            if same and record is not None:
                decision = self._resume_decision(item, record)
                if decision is _DOWNLOAD:
                    self._downloads.append((item, record))
                    continue
                if isinstance(decision, Outcome):
                    self.progress.skipped += 1
                    self._emit("skipped", item.id, status=decision.status, line=item.request.line)
                    self._out(decision)
                    continue
            try:
                entry = await self._client.batches.checked_entry(item.request, item.id)
            except ValidationError as exc:
                self._finish_invalid(Outcome(item.id, "failed", item.request, error=exc))
                continue
            item.entry = entry if len(entry) <= _KEEP_ENTRY else None
            self._emit("queued", item.id, line=item.request.line)
            to_run.append(item)
        return attached, to_run

    def _accept(self, job: Any, ids: set[str], repeats: dict[str, int]) -> Item | Outcome:
        named = name_job(job, ids, repeats, self.progress.total)
        return named if isinstance(named, Outcome) else Item(*named)

    def _finish_invalid(self, outcome: Outcome) -> None:
        self.progress.failed += 1
        self._emit("failed", outcome.id, status="failed", error=outcome.error, line=outcome.line)
        self._out(outcome)

    def _resume_decision(self, item: Item, earlier: ManifestRecord) -> Outcome | object | None:
        """``None`` to run the item again, ``_DOWNLOAD`` to fetch its recorded URLs again, else
        the outcome of skipping it."""
        request = item.request

        def skip(error: BaseException | None = None) -> Outcome:
            files = tuple(self.output_dir / f.path for f in earlier.files)
            status: Any = earlier.status
            return Outcome(item.id, status, request, files, error, True, request.line, earlier)

        status = earlier.status
        if status == "ok":
            if earlier.files_intact(self.output_dir, check_sha256=self._verify):
                return skip()
            return None
        if status in ("unknown", "expired"):
            if self._resend_unknown:
                return None
            return skip(
                XAIImagesError(
                    f"{status} in an earlier run: {earlier.error or ''} (generated again only "
                    "with resend_unknown=True / --resend-unknown: it may be billed again)"
                )
            )
        if not self._retry_failed:
            return skip(
                XAIImagesError(
                    f"{status} in an earlier run: {earlier.error or ''} "
                    "(retry with retry_failed=True / --retry-failed)"
                )
            )
        if status == "failed" and earlier.billed:
            if any(p.url for p in earlier.pending):
                return _DOWNLOAD  # generated and billed: fetch its URLs again, do not regenerate
            if not self._resend_unknown:
                return skip(
                    XAIImagesError(
                        "its images were generated (and billed) but could not be saved and "
                        "cannot be fetched again; pass resend_unknown=True / --resend-unknown "
                        "to generate (and pay) again"
                    )
                )
        return None

    # -- submitting --------------------------------------------------------------------------------

    async def _attach(self, run: RunState) -> None:
        """Take over a recorded batch: settle adds in doubt by listing its requests."""
        assert run.batch_id is not None
        self.run_id, self.batch_id = run.run_id, run.batch_id
        self.progress.batch_id = run.batch_id
        try:
            batch = await self._client.batches.get(run.batch_id)
        except NotFoundError:
            # Gone (purged after expiry, or another account): its items end when collected.
            run.accepts_adds = False
            return
        # New items go into a new batch once this one can take no more.
        run.accepts_adds = not (batch.cancelled or batch.expired() or batch.input_file_id)
        doubt = run.in_doubt
        if doubt:
            held = await self._client.batches.request_ids(run.batch_id)
            landed = sorted(doubt & held)
            lost = sorted(doubt - held)
            if landed:
                await self._record("added", batch_id=run.batch_id, ids=landed)
                run.added.update(landed)
            if lost:
                await self._record("refused", batch_id=run.batch_id, ids=lost)
                run.intended.difference_update(lost)

    async def _open_batch(self, run: RunState | None) -> RunState:
        """The run's batch: recorded, found by name after a crash, or created (and recorded)."""
        batches = self._client.batches
        recorded = run is not None
        if run is None:
            run_id = f"xai-images-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}"
            await self._record("run", run_id=run_id)
            run = RunState(run_id, 0)
        self.run_id = run.run_id
        if run.batch_id is None:
            # A run recorded earlier without its batch: the create may have landed before a
            # crash, so look for it by name first (a new run id cannot have a batch yet).
            found = await batches.find(run.run_id) if recorded else None
            batch = found or await batches.create(run.run_id)
            await self._record("batch", run_id=run.run_id, batch_id=batch.batch_id)
            run.batch_id = batch.batch_id
        self.batch_id = self.progress.batch_id = run.batch_id
        return run

    async def _add_items(
        self, run: RunState, items: Sequence[Item], attached: dict[str, Item]
    ) -> None:
        batches = self._client.batches
        entries: list[tuple[str, bytes]] = []
        items = await self._within_budget(items)
        by_id = {item.id: item for item in items}
        for item in items:
            entry = item.entry or await batches.checked_entry(item.request, item.id)
            entries.append((item.id, entry))
        for chunk in batches.chunks(entries):
            await self._add_chunk(run, chunk, by_id, attached)

    async def _within_budget(self, items: Sequence[Item]) -> Sequence[Item]:
        """The items whose worst-case price fits ``max_cost``, each reserved; the rest are not
        submitted (the run ends as "budget reached"); an unlisted model fails its item."""
        budget = self._budget
        if budget is None:
            return items
        kept: list[Item] = []
        for item in items:
            try:
                reservation = await budget.reserve(item.request, wait=False)
            except ValidationError as exc:
                record, outcome = self._finish(item, "failed", error=exc)
                await self._settle(record, outcome)
                continue
            if reservation is None:
                self.progress.budget_reached = True
                break
            self._reservations[item.id] = reservation
            kept.append(item)
        return kept

    async def _add_chunk(
        self,
        run: RunState,
        chunk: Sequence[tuple[str, bytes]],
        by_id: dict[str, Item],
        attached: dict[str, Item],
    ) -> None:
        assert run.batch_id is not None
        ids = [request_id for request_id, _ in chunk]
        await self._record("adding", batch_id=run.batch_id, ids=ids)
        run.intended.update(ids)
        try:
            await self._client.batches.add_call(run.batch_id, chunk)
        except APIStatusError as exc:
            if exc.status_code not in (400, 413, 422):
                raise
            # Refused as a whole, so nothing of it was added: halve it to find the bad items.
            await self._record("refused", batch_id=run.batch_id, ids=ids)
            run.intended.difference_update(ids)
            if len(chunk) == 1:
                reservation = self._reservations.pop(ids[0], None)
                if self._budget is not None and reservation is not None:
                    await self._budget.release(reservation)
                record, outcome = self._finish(by_id[ids[0]], "failed", error=exc)
                await self._settle(record, outcome)
                return
            half = len(chunk) // 2
            await self._add_chunk(run, chunk[:half], by_id, attached)
            await self._add_chunk(run, chunk[half:], by_id, attached)
            return
        await self._record("added", batch_id=run.batch_id, ids=ids)
        run.added.update(ids)
        for request_id in ids:
            item = by_id[request_id]
            attached[request_id] = item
            self.progress.started += 1
            self._emit("started", request_id, line=item.request.line)
