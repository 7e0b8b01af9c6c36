"""The Batch API source of the bulk engine: ``client.bulk(..., via="batch-api")``.

The engine (``_engine.py``) reads, names, resumes, saves, counts and records the items as for
real-time requests; this source puts the requests into one server-side batch: they do not count
towards the real-time rate limit, and nothing has to stay running while xAI works.

1. Every item is read and validated (its request body built, the size limit checked) before
   anything is created or added; bad items become ``failed`` outcomes.
2. A run id is recorded, the batch (named after it) created, its id recorded; requests are
   added in calls under the size and rate limits, each call recorded before and after
   (``_jobstate.py`` lists the records). A resumed run attaches to the recorded batch,
   lists its requests to settle any add in doubt, and sends only what is missing.
3. While the batch runs, results are read page by page (polling with backoff) and each image
   is saved as soon as its result appears, through the same result layer as real-time images
   (streamed, atomic, sha256, sniffed extension); its URLs expire an hour after the request
   finished. Errors become ``failed`` outcomes with the server's code and message, moderated
   requests ``blocked``, URLs that expired before they were fetched ``expired``.

Stopping (``stop()``, Ctrl-C) stops spending: no further add call is made (the items not added
are listed in ``not_submitted``, and a later run submits them), but it never cancels the remote
batch: running the job again attaches to it and saves the rest. ``cancel=True`` cancels it, then
saves what finished.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from .._errors import APIStatusError, NotFoundError, ValidationError, XAIImagesError
from .._hooks import RateLimited, RetryScheduled
from ._batchapi_collect import CollectMixin
from ._batchapi_state import RemoteProgress
from ._engine import Engine, _Names
from ._jobstate import RunState
from ._outcome import Outcome
from ._records import Answer, build_record
from ._source_realtime import BatchRun
from ._spend import SpendRefused
from ._tally import Item

if TYPE_CHECKING:
    import datetime

    from ._jobstate import JobState
    from ._manifest import ItemStatus, ManifestRecord

__all__ = ["BatchAPI", "RemoteBatchRun", "engine"]

logger = logging.getLogger("xai_images")
_FREE = object()  # the reservation of a seam that returned None (settled or released all the same)


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
        # Items in the batch and not settled yet (settled ones are dropped: memory stays that
        # of the items in flight).
        self._attached: dict[str, Item] = {}
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
        for item in self._attached.values():
            reservation, item.reservation = item.reservation, None
            if reservation is not None and reservation is not _FREE:
                await self._spend.settle(reservation, None)
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
        reservation, item.reservation = item.reservation, None
        if reservation is not None:
            if record.billed or record.status in ("unknown", "expired", "blocked"):
                await self._spend.settle(reservation, record.cost_in_usd_ticks)
            else:
                await self._spend.release(reservation)
        self._attached.pop(outcome.id, None)
        await self._settle(record, outcome)

    async def _work(self, state: JobState) -> None:
        run = state.open_run
        if run is not None and run.batch_id is not None:
            # Settled first, so that ids whose add never landed are submitted again below.
            await self._attach(run)
        attached, to_run, downloads = await self._accept_all(state, run)
        if downloads:
            await asyncio.gather(*(self._fetch_again(i, r) for i, r in downloads))
        if self._cancel:
            if run is not None and run.batch_id is not None:
                await self._note("cancel", batch_id=run.batch_id)
                await self._client.batches.cancel(run.batch_id)
            self.not_submitted.extend(item.id for item in to_run)
            to_run = []
        for phase in range(2):
            held = run.intended if run is not None else set()
            open_for_adds = run is None or run.accepts_adds
            fresh = [item for item in to_run if item.id not in held and open_for_adds]
            later = [item for item in to_run if item.id in held or not open_for_adds]
            adding: asyncio.Future[None] | None = None
            if fresh and not self._adds_halted:
                run = await self._open_batch(run)
                # Results are read (and saved) while later calls are still being added.
                adding = asyncio.ensure_future(self._add_items(run, fresh, attached))
                self._adders.append(adding)
            elif fresh:
                self.not_submitted.extend(item.id for item in fresh)
            if run is None or run.batch_id is None:
                self.not_submitted.extend(item.id for item in later)
                break
            if self._detach:
                if adding is not None:
                    await adding
                self.detached = True
                self.not_submitted.extend(item.id for item in later)
                return
            await self._collect(run, attached, adding)
            if not later or not run.closed or self._stop.is_set() or phase == 1:
                self.not_submitted.extend(item.id for item in later)
                break
            # Items already in the finished batch (retried ones) go into a new batch.
            run, to_run = None, later

    # -- reading and deciding ----------------------------------------------------------------------

    async def _accept_all(
        self, state: JobState, run: RunState | None
    ) -> tuple[dict[str, Item], list[Item], list[tuple[Item, ManifestRecord]]]:
        """Validate every item; return those in the open batch, those to submit, and those
        whose paid images are to be downloaded again."""
        attached = self._attached
        to_run: list[Item] = []
        downloads: list[tuple[Item, ManifestRecord]] = []
        names = _Names()

        def attach(item: Item, found: tuple[int, ManifestRecord] | None) -> bool:
            # In the open batch and not settled by a record of this batch's time: its result
            # is collected, whatever an older record says.
            if run is None or item.id not in run.intended:
                return False
            if found is not None:
                offset, record = found
                if offset >= run.offset and record.request == item.request.to_json():
                    return False
            attached[item.id] = item
            return True

        async for job in self._jobs():
            admitted = await self._admit(job, names, state, check_attached=attach)
            if admitted is None:
                continue
            if isinstance(admitted, tuple):
                downloads.append(admitted)
                continue
            item = admitted
            if attached.get(item.id) is item:
                self.progress.started += 1
                continue
            try:
                # Checked now (size limit, inputs); encoded again when added, so that memory
                # does not hold every body of the job.
                await self._client.batches.checked_entry(item.request, item.id)
            except ValidationError as exc:
                self._fail_unread(Outcome(item.id, "failed", item.request, error=exc))
                continue
            self._emit("queued", item.id, line=item.request.line)
            to_run.append(item)
        return attached, to_run, downloads

    async def _fetch_again(self, item: Item, earlier: ManifestRecord) -> None:
        """Fetch the recorded URLs of an item billed in an earlier run (no new generation)."""
        async with self._slots:
            ended = await self._download_again(item, earlier, expired="expired", regenerate=False)
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
                run.added.update(landed)
            if lost:
                await self._note("refused", batch_id=run.batch_id, ids=lost)
                run.intended.difference_update(lost)

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

    async def _add_items(
        self, run: RunState, items: Sequence[Item], attached: dict[str, Item]
    ) -> None:
        """Add the items in calls under the size and count limits, encoding them as they go
        (memory holds about two calls' worth of bodies); after `stop` nothing more is added."""
        batches = self._client.batches
        by_id = {item.id: item for item in items}
        pending: list[tuple[str, bytes]] = []
        size = 0
        for number, item in enumerate(items):
            if self._adds_halted:
                self._unsent([i for i, _ in pending] + [i.id for i in items[number:]])
                return
            request = item.request
            if self._signed is not None:
                try:
                    request = await self._signed.sign(item, self._output)  # type: ignore[arg-type]
                except XAIImagesError as exc:  # a taken key, a store that cannot sign: unpaid
                    await self._end(item, *self._finish(item, "failed", error=exc))
                    continue
            entry = await batches.checked_entry(request, item.id)
            pending.append((item.id, entry))
            size += len(entry)
            if len(pending) > 2 * batches.limits.max_requests_per_call or (
                size > 2 * batches.limits.max_call_bytes
            ):
                # Greedy packing: every call but the last of a prefix is final.
                *ready, last = batches.chunks(pending)
                for chunk in ready:
                    await self._add_call(run, chunk, by_id, attached)
                pending, size = last, sum(len(e) for _, e in last)
        for chunk in batches.chunks(pending):
            await self._add_call(run, chunk, by_id, attached)

    async def _add_call(
        self,
        run: RunState,
        chunk: Sequence[tuple[str, bytes]],
        by_id: dict[str, Item],
        attached: dict[str, Item],
    ) -> None:
        """Make one add call, unless the run was stopped or the budget reached."""
        if self._adds_halted:
            self._unsent([i for i, _ in chunk])
        else:
            await self._add_chunk(run, chunk, by_id, attached)

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
                item.reservation = _FREE if reservation is None else reservation
            kept.append((request_id, entry))  # (a part of a refused call keeps its reservation)
        return kept

    async def _add_chunk(
        self,
        run: RunState,
        chunk: Sequence[tuple[str, bytes]],
        by_id: dict[str, Item],
        attached: dict[str, Item],
    ) -> None:
        assert run.batch_id is not None
        chunk = await self._reserve(chunk, by_id)
        if not chunk:
            return
        ids = [request_id for request_id, _ in chunk]
        await self._note("adding", batch_id=run.batch_id, ids=ids)
        run.intended.update(ids)
        try:
            await self._client.batches.add_call(run.batch_id, chunk)
        except APIStatusError as exc:
            if exc.status_code not in (400, 413, 422):
                raise
            # Refused as a whole, so nothing of it was added: halve it to find the bad items.
            await self._note("refused", batch_id=run.batch_id, ids=ids)
            run.intended.difference_update(ids)
            if len(chunk) == 1:
                item = by_id[ids[0]]
                await self._end(item, *self._finish(item, "failed", error=exc))
                return
            half = len(chunk) // 2
            await self._add_chunk(run, chunk[:half], by_id, attached)
            await self._add_chunk(run, chunk[half:], by_id, attached)
            return
        await self._note("added", batch_id=run.batch_id, ids=ids)
        run.added.update(ids)
        for request_id in ids:
            item = by_id[request_id]
            attached[request_id] = item
            self.progress.started += 1
            self._emit("started", request_id, line=item.request.line)
