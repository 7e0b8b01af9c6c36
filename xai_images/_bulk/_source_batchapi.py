"""The Batch API source of the bulk engine: ``client.bulk(..., via="batch-api")``.

The engine (``_engine.py``) reads, names, resumes, saves, counts and records the items as for
real-time requests; this source puts the requests into one server-side batch: they do not count
towards the real-time rate limit, and nothing has to stay running while xAI works.

1. The job is read once, lazily: each item is validated (its request body built, the size
   limit checked) and then added with the next call, so memory holds about two calls' worth of
   requests, not the job; bad items become ``failed`` outcomes. No batch is created before the
   first valid item to submit is read.
2. A run id is recorded, the batch (named after it) created, its id recorded; requests are
   added in calls under the size and rate limits, each call recorded before and after
   (``_jobstate.py`` lists the records). A resumed run attaches to the recorded batch,
   lists its requests to settle any add in doubt, and sends only what is missing.
3. An item the batch holds waits for its result off the heap (``_inbatch.py``: its request
   and reservation in a spill file, an id hash and an offset in memory), so memory does not
   grow with the batch. While the batch runs, results are read page by page (polling with
   backoff), the page's items read back, and each image saved as soon as its result
   appears, through the same result layer as real-time images (streamed, atomic, sha256,
   sniffed extension); its URLs expire an hour after the request finished. Errors become
   ``failed`` outcomes with the server's code and message, moderated requests ``blocked``,
   URLs that expired before they were fetched ``expired``.

Stopping (``stop()``, Ctrl-C) stops spending: no further add call is made (the items not added
are listed in ``not_submitted``, and a later run submits them), but it never cancels the remote
batch: running the job again attaches to it and saves the rest. ``cancel=True`` cancels it, then
saves what finished.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from .._errors import APIStatusError, NotFoundError, ValidationError, XAIImagesError
from .._hooks import RateLimited, RetryScheduled
from ._batchapi_collect import CollectMixin
from ._batchapi_state import RemoteProgress
from ._engine import Engine
from ._inbatch import PAGE, InBatch
from ._jobstate import RunState
from ._naming import _Names
from ._outcome import Outcome
from ._records import Answer, build_record
from ._source_realtime import BatchRun
from ._spend import SpendRefused
from ._tally import Item

if TYPE_CHECKING:
    import datetime

    from ._jobstate import JobState
    from ._manifest import ItemStatus, ManifestRecord

_Entry = tuple[Item, bytes]  # an item to submit and its encoded batch request

__all__ = ["BatchAPI", "RemoteBatchRun", "engine"]

logger = logging.getLogger("xai_images")


class _Free(enum.Enum):
    FREE = "free"  # (an enum: it keeps its identity through the spill file's pickles)


# The reservation of a seam that returned None (settled or released all the same).
_FREE = _Free.FREE


async def _fresh(
    items: AsyncIterator[_Entry],
    held: Callable[[str], bool] | None,
    open_for_adds: bool,
    later: list[_Entry],
) -> AsyncIterator[_Entry]:
    """The items of ``items`` for the open batch; those it already holds (or all, when it takes
    no more adds) go to ``later``."""
    async for entry in items:
        if not open_for_adds or (held is not None and held(entry[0].id)):
            later.append(entry)
        else:
            yield entry


async def _chain(first: _Entry, rest: AsyncIterator[_Entry]) -> AsyncIterator[_Entry]:
    yield first
    async for entry in rest:
        yield entry


async def _iterate(entries: list[_Entry]) -> AsyncIterator[_Entry]:
    for entry in entries:
        yield entry


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


class RemoteBatchRun(CollectMixin, Engine):
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
        not_submitted: ids of items left for a later run (they belong in a new batch, the run
            was stopped before adding them, or the budget was reached).
    """

    progress: RemoteProgress

    def __init__(
        self,
        *args: Any,
        detach: bool = False,
        wait: bool = True,
        cancel: bool = False,
        poll_interval: float = 2.0,
        max_poll_interval: float = 30.0,
        on_poll: Callable[[RemoteProgress], None] | None = None,
        upload_urls: bool = False,
        upload_expires: datetime.timedelta | float | None = None,
        **kwargs: Any,
    ) -> None:
        for name, value in (
            ("poll_interval", poll_interval),
            ("max_poll_interval", max_poll_interval),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValidationError(name, value, "a number of seconds > 0")
        super().__init__(*args, progress=RemoteProgress(), **kwargs)
        self._detach = detach
        self._wait = wait
        self._cancel = cancel
        self._poll = (float(poll_interval), float(max(poll_interval, max_poll_interval)))
        self._on_poll = on_poll
        self.run_id: str | None = None
        self.batch_id: str | None = None
        self.detached = False
        self.cancelled_by_xai: str | None = None
        self.not_submitted: list[str] = []
        self._slots = asyncio.Semaphore(self._concurrency)
        # Items the batch holds and this run has not settled, off the heap; the ids among them
        # whose results are being saved.
        self._inbatch = InBatch(self.manifest_path.parent, self._tally)
        self._saving: set[str] = set()
        self._paying = False  # some reservation is more than `_FREE`
        self._adders: list[asyncio.Future[None]] = []
        if upload_urls:  # signed for the batch's lifetime unless told otherwise
            from ._signed_job import BATCH_UPLOAD_EXPIRY, SignedJob

            self._signed = SignedJob(self._store, upload_expires, BATCH_UPLOAD_EXPIRY)

    def __repr__(self) -> str:
        return f"<RemoteBatchRun batch_id={self.batch_id!r} {self.progress!r}>"

    def stop(self) -> None:
        """Stop adding and polling; saves in flight finish and are recorded. The batch is not
        cancelled: running the job again attaches to it."""
        super().stop()

    _budget_waits = False  # results settle only after submission: reserving cannot wait

    def _unsent(self, ids: list[str]) -> None:
        """Items left unadded: waiting for a later run, unless the budget left them out."""
        if not self.progress.budget_reached:
            self.not_submitted.extend(ids)

    async def _close_budget(self) -> None:
        # Items added whose result was not read: maybe billed, so their reservations count.
        try:
            if self._paying:
                async for items in self._inbatch.every():
                    for item in items:
                        self._inbatch.discard(item.id)
                        if item.reservation is not None and item.reservation is not _FREE:
                            await self._spend.settle(item.reservation, None)
        finally:
            await asyncio.to_thread(self._inbatch.close)
        await super()._close_budget()

    @property
    def _adds_halted(self) -> bool:
        """No more add calls: the run was stopped, or the budget is reached."""
        return self._stop.is_set() or self.progress.budget_reached

    # -- the source ------------------------------------------------------------------------------

    def _more_tasks(self) -> Iterable[asyncio.Future[Any]]:
        return self._adders

    def _on_client_event(self, event: Any) -> None:
        # 429s and retries of this run's Batch API calls arrive through the client's hooks.
        self._tally.on_client_event(event)  # download retries of the images being saved
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

    async def _note(self, kind: str, **fields: Any) -> None:
        """Append a run record (``fsync``-ed before the step it announces)."""
        assert self._writer is not None
        await self._writer.write_json({"record": kind, **fields}, sync=True)

    def _record(self, item: Item, status: ItemStatus, **fields: Any) -> ManifestRecord:
        cost = fields.pop("cost", None)
        fields.pop("note", None)
        model = fields.pop("model", None) or item.request.model  # the one that answered
        answer = Answer(self.batch_id, 1 if self.batch_id else 0, cost, model)
        files = fields.pop("files", ())
        return build_record(item.id, item.request, status, answer, self.output_dir, files, **fields)

    async def _end(self, item: Item, record: ManifestRecord, outcome: Outcome) -> None:
        """Settle an item: its reservation, its manifest record, its count and outcome."""
        if item.held:
            self._inbatch.discard(item.id)
        reservation, item.reservation = item.reservation, None
        if reservation is not None:
            if record.billed or record.status in ("unknown", "expired", "blocked"):
                await self._spend.settle(reservation, record.cost_in_usd_ticks)
            else:
                await self._spend.release(reservation)
        await self._settle(record, outcome)

    async def _work(self, state: JobState) -> None:
        run = state.open_run
        if run is not None and run.batch_id is not None:
            # Settled first, so that ids whose add never landed are submitted again below.
            await self._attach(run)
        # The job is read once, as the adds go: an item is validated and encoded, then added
        # (with up to two calls' worth of others), so memory does not hold the job's requests.
        later: list[_Entry] = []  # items of a finished batch (retried ones): a new batch takes them
        items: AsyncIterator[_Entry] = self._accept(state, run)
        if self._cancel:
            async for item, _entry in items:
                self.not_submitted.append(item.id)
            if run is not None and run.batch_id is not None:
                await self._note("cancel", batch_id=run.batch_id)
                await self._client.batches.cancel(run.batch_id)
        for phase in range(2):
            held = run.holds if run is not None else None
            open_for_adds = run is None or run.accepts_adds
            fresh = _fresh(items, held, open_for_adds, later)
            first = await anext(fresh, None)
            adding: asyncio.Future[None] | None = None
            if first is not None and not self._adds_halted:
                run = await self._open_batch(run)
                # Results are read (and saved) while later calls are still being added.
                adding = asyncio.ensure_future(self._add_items(run, _chain(first, fresh)))
                self._adders.append(adding)
            elif first is not None:
                self.not_submitted.append(first[0].id)
                self.not_submitted.extend([item.id async for item, _entry in fresh])
            first = None  # (no item is kept while the batch runs)
            if run is None or run.batch_id is None:
                self.not_submitted.extend(item.id for item, _entry in later)
                break
            if self._detach:
                if adding is not None:
                    await adding
                self.detached = True
                self.not_submitted.extend(item.id for item, _entry in later)
                return
            await self._collect(run, adding)
            if not later or not run.closed or self._stop.is_set() or phase == 1:
                self.not_submitted.extend(item.id for item, _entry in later)
                break
            # Items already in the finished batch (retried ones) go into a new batch.
            run, items, later = None, _iterate(later), []

    # -- reading and deciding ----------------------------------------------------------------------

    async def _accept(self, state: JobState, run: RunState | None) -> AsyncIterator[_Entry]:
        """Read and validate the job, yielding each item to submit with its encoded entry.

        Items in the open batch join `_inbatch` (their results are collected), a page at a
        time and before the next item to add is yielded; items whose paid images are to be
        downloaded again are fetched in tasks (at most ``concurrency`` at once, so reading
        waits for a free slot); bad items end as ``failed`` outcomes.
        """
        names = _Names()
        taken: list[Item] = []  # the item `attach` took over last
        joining: list[Item] = []

        def attach(item: Item, found: tuple[int, ManifestRecord] | None) -> bool:
            # In the open batch and not settled by a record of this batch's time: its result
            # is collected, whatever an older record says.
            if run is None or not run.holds(item.id):
                return False
            if found is not None:
                offset, record = found
                if offset >= run.offset and record.request == item.request.to_json():
                    return False
            taken[:] = [item]
            return True

        async for admitted in self._admitted(names, state, check_attached=attach):
            if isinstance(admitted, tuple):
                await self._slots.acquire()
                task = asyncio.ensure_future(self._fetch_again(*admitted))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                continue
            item = admitted
            if taken and taken[0] is item:
                taken.clear()
                self.progress.started += 1
                # (An id held only in doubt by a batch that is gone is never collected.)
                if run is not None and item.id in run.added:
                    joining.append(item)
                if len(joining) >= PAGE:
                    await self._inbatch.join(joining)
                    joining = []
                continue
            try:
                entry = await self._client.batches.checked_entry(item.request, item.id)
            except ValidationError as exc:
                self._fail_unread(Outcome(item.id, "failed", item.request, error=exc))
                continue
            if joining:
                await self._inbatch.join(joining)
                joining = []
            self._emit("queued", item.id, line=item.request.line)
            yield item, entry
        await self._inbatch.join(joining)

    async def _fetch_again(self, item: Item, earlier: ManifestRecord) -> None:
        """Fetch the recorded URLs of an item billed in an earlier run (no new generation);
        the caller took one of the ``_slots``."""
        try:
            ended = await self._download_again(item, earlier, expired="expired", regenerate=False)
        finally:
            self._slots.release()
        assert ended is not None
        await self._end(item, *ended)

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
                await self._note("added", batch_id=run.batch_id, ids=landed)
                run.landed(landed)
            if lost:
                await self._note("refused", batch_id=run.batch_id, ids=lost)
                run.refused(lost)

    async def _open_batch(self, run: RunState | None) -> RunState:
        """The run's batch: recorded, found by name after a crash, or created (and recorded)."""
        batches = self._client.batches
        recorded = run is not None
        if run is None:
            run_id = f"xai-images-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}"
            await self._note("run", run_id=run_id)
            run = RunState(run_id, 0)
        self.run_id = run.run_id
        if run.batch_id is None:
            # A run recorded earlier without its batch: the create may have landed before a
            # crash, so look for it by name first (a new run id cannot have a batch yet).
            found = await batches.find(run.run_id) if recorded else None
            batch = found or await batches.create(run.run_id)
            await self._note("batch", run_id=run.run_id, batch_id=batch.batch_id)
            run.batch_id = batch.batch_id
        self.batch_id = self.progress.batch_id = run.batch_id
        return run

    async def _add_items(self, run: RunState, items: AsyncIterator[_Entry]) -> None:
        """Add the items in calls under the size and count limits as they are read (memory
        holds about two calls' worth of items); after `stop` (or the budget) nothing more is
        added and the rest of the job is only read (listed in ``not_submitted``)."""
        batches = self._client.batches
        by_id: dict[str, Item] = {}
        pending: list[tuple[str, bytes]] = []
        size = 0
        async for item, entry in items:
            if self._adds_halted:
                self._unsent([i for i, _ in pending] + [item.id])
                pending, size = [], 0
                by_id.clear()
                continue
            if self._signed is not None:
                # Signed as it is added (the URLs' life starts here), then encoded again.
                try:
                    request = await self._signed.sign(item, self._output)  # type: ignore[arg-type]
                except XAIImagesError as exc:  # a taken key, a store that cannot sign: unpaid
                    await self._end(item, *self._finish(item, "failed", error=exc))
                    continue
                entry = await batches.checked_entry(request, item.id)
            by_id[item.id] = item
            pending.append((item.id, entry))
            size += len(entry)
            if len(pending) > 2 * batches.limits.max_requests_per_call or (
                size > 2 * batches.limits.max_call_bytes
            ):
                # Greedy packing: every call but the last of a prefix is final.
                *ready, last = batches.chunks(pending)
                for chunk in ready:
                    await self._add_call(run, chunk, by_id)
                pending, size = last, sum(len(e) for _, e in last)
        for chunk in batches.chunks(pending):
            await self._add_call(run, chunk, by_id)

    async def _add_call(
        self,
        run: RunState,
        chunk: Sequence[tuple[str, bytes]],
        by_id: dict[str, Item],
        spilled: dict[str, int] | None = None,
    ) -> None:
        """Make one add call (unless the run was stopped or the budget reached): reserve each
        request's price, spill the items to `_inbatch`, record the call before and after; the
        added items are then held there, and the call's items leave ``by_id``.

        A call refused as a whole (400, 413, 422) added nothing: it is halved (``spilled``:
        the halves' offsets) until the bad items are found, each failing alone.
        """
        assert run.batch_id is not None
        try:
            if spilled is None and self._adds_halted:
                self._unsent([i for i, _ in chunk])
                return
            kept = await self._reserve(chunk, by_id)
            if not kept:
                return
            ids = [request_id for request_id, _ in kept]
            if spilled is None:
                offsets = await self._inbatch.spill([by_id[i] for i in ids])
                spilled = dict(zip(ids, offsets, strict=True))
            await self._note("adding", batch_id=run.batch_id, ids=ids)
            run.adding(ids)
            try:
                await self._client.batches.add_call(run.batch_id, kept)
            except APIStatusError as exc:
                if exc.status_code not in (400, 413, 422):
                    raise
                # Refused as a whole, so nothing of it was added: halve it to find the bad items.
                await self._note("refused", batch_id=run.batch_id, ids=ids)
                run.refused(ids)
                if len(kept) == 1:
                    item = by_id[ids[0]]
                    await self._end(item, *self._finish(item, "failed", error=exc))
                    return
                half = len(kept) // 2
                await self._add_call(run, kept[:half], by_id, spilled)
                await self._add_call(run, kept[half:], by_id, spilled)
                return
            await self._note("added", batch_id=run.batch_id, ids=ids)
            run.confirmed(ids)
            for request_id in ids:
                self._inbatch.hold(request_id, spilled[request_id])
                self.progress.started += 1
                self._emit("started", request_id, line=by_id[request_id].request.line)
        finally:
            for request_id, _entry in chunk:
                by_id.pop(request_id, None)

    async def _reserve(
        self, chunk: Sequence[tuple[str, bytes]], by_id: dict[str, Item]
    ) -> Sequence[tuple[str, bytes]]:
        """Reserve the price of each request of ``chunk``; the part the seam allows (an item
        whose model the price table does not list fails alone)."""
        kept: list[tuple[str, bytes]] = []
        for request_id, entry in chunk:
            item = by_id[request_id]
            if item.reservation is None:
                try:
                    reservation = await self._spend.reserve(item.request, item_id=item.id)
                except SpendRefused as exc:
                    # What was added is still collected (it is paid for); nothing more is
                    # added, and the rest is not reported as waiting for a batch.
                    if not self.progress.budget_reached:
                        logger.warning("xai-images batch: adding no more requests: %s", exc.reason)
                    self.progress.budget_reached = True
                    return kept
                except ValidationError as exc:
                    await self._end(item, *self._finish(item, "failed", error=exc))
                    continue
                if reservation is None:
                    reservation = _FREE
                else:
                    self._paying = True
                item.reservation = reservation
            kept.append((request_id, entry))  # (a part of a refused call keeps its reservation)
        return kept
