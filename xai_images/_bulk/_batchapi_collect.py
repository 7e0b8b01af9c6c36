"""The collecting half of a Batch API bulk job: poll, read result pages, save, record.

A mixin of :class:`~xai_images._bulk._source_batchapi.RemoteBatchRun` (which holds the state
it uses): the items waiting for results are in its `InBatch` (off the heap); each page of
results has its items read back in one trip to a worker thread, and each result is saved as
soon as a page carries it, with at most ``concurrency`` items saving at once (reading further
pages waits for a free slot, so memory stays bounded); each settled item appends its manifest
record through the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .._errors import (
    ImageExpiredError,
    NotFoundError,
    OutcomeUnknownError,
    XAIImagesError,
)
from ._batchapi_state import BatchRequestError, RemoteProgress
from ._inbatch import PAGE

if TYPE_CHECKING:
    from .._api._batch_models import BatchRequestState, BatchResult, BatchState
    from .._api._models import GeneratedImage
    from .._results._files import SavedImage
    from ._engine import BulkClient
    from ._inbatch import InBatch
    from ._jobstate import RunState
    from ._manifest import ItemStatus, ManifestRecord, PendingImage
    from ._outcome import Outcome
    from ._tally import Item

__all__ = ["CollectMixin"]

logger = logging.getLogger("xai_images")


class CollectMixin:
    """Polling and saving for ``RemoteBatchRun`` (the engine saves, records and counts)."""

    _client: BulkClient
    progress: RemoteProgress
    batch_id: str | None
    run_id: str | None
    cancelled_by_xai: str | None
    _on_poll: Callable[[RemoteProgress], None] | None
    _wait: bool
    _stop: asyncio.Event
    _poll: tuple[float, float]
    _tasks: set[asyncio.Task[None]]
    _slots: asyncio.Semaphore
    _emit: Callable[..., None]
    _inbatch: InBatch
    _saving: set[str]

    if TYPE_CHECKING:  # provided by the engine and the source (see RemoteBatchRun)

        async def _note(self, kind: str, **fields: Any) -> None: ...

        async def _end(self, item: Item, record: ManifestRecord, outcome: Outcome) -> None: ...

        async def _drain(self) -> None: ...

        def _finish(
            self, item: Item, status: ItemStatus, **fields: Any
        ) -> tuple[ManifestRecord, Outcome]: ...

        async def _save_images(
            self, item: Item, images: Sequence[GeneratedImage]
        ) -> tuple[list[SavedImage], list[PendingImage], list[BaseException]]: ...

    # -- collecting --------------------------------------------------------------------------------

    async def _collect(self, run: RunState, adding: asyncio.Future[None] | None) -> None:
        """Poll the batch and save each result as it appears, until every item it holds for
        this run (`_inbatch`) is settled.

        ``adding`` is the task still adding requests, if any: items join as they are added, and
        the batch is not taken as done before it ends.
        """
        assert run.batch_id is not None
        batch_id = run.batch_id
        self.run_id, self.batch_id = run.run_id, batch_id
        self.progress.batch_id = batch_id
        batches = self._client.batches
        held = self._inbatch
        token: str | None = None
        interval = self._poll[0]
        while True:
            submitting = adding is not None and not adding.done()
            if adding is not None and adding.done() and adding.exception() is not None:
                break  # raised below
            if not held and not submitting:
                break
            try:
                batch = await batches.get(batch_id)
            except NotFoundError:
                await self._drain()
                why = f"the API no longer knows batch {batch_id}: its results are gone"
                await self._settle_rest("expired", why)
                break
            self._server_state(batch.state)
            if batch.expired():
                await self._drain()
                await self._settle_rest("expired", "the batch expired before its results were read")
                break
            try:
                token, new = await self._read(batch_id, token)
            except NotFoundError:
                await self._drain()
                await self._settle_rest("expired", "the batch's results are gone (expired)")
                break
            if batch.done and not submitting:
                if len(held) > sum(1 for i in self._saving if i in held):
                    await self._read(batch_id, None)  # a last full sweep
                await self._drain()
                if batch.cancel_by_xai_message:
                    self.cancelled_by_xai = batch.cancel_by_xai_message
                    why = f"xAI cancelled the batch: {batch.cancel_by_xai_message}"
                    await self._settle_rest("failed", why)
                else:
                    await self._settle_unlisted(batch_id)
                break
            if not self._wait or self._stop.is_set():
                break
            # Back off while nothing arrives; poll at the base rate again once results flow.
            interval = self._poll[0] if new else min(interval * 1.5, self._poll[1])
            await self._pause(interval, adding if submitting else None)
        await self._drain()
        if adding is not None:
            await adding  # finishes (and records) the adds even when polling stopped early
        if not held:
            await self._note("closed", batch_id=batch_id)
            run.closed = True

    async def _pause(self, seconds: float, adding: asyncio.Future[None] | None) -> None:
        """Wait ``seconds``, or less: until ``stop()``, or until the adds end (poll then)."""
        stopped = asyncio.ensure_future(self._stop.wait())
        waiters: set[asyncio.Future[Any]] = {stopped}
        if adding is not None:
            waiters.add(adding)
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stopped

    def _server_state(self, state: BatchState) -> None:
        p = self.progress
        p.server_requests = state.num_requests
        p.server_pending = state.num_pending
        p.server_succeeded = state.num_success
        p.server_failed = state.num_error
        p.server_cancelled = state.num_cancelled
        if self._on_poll is not None:
            try:
                self._on_poll(p)
            except Exception:
                logger.exception("xai-images batch: the on_poll callback raised; ignoring")

    async def _read(self, batch_id: str, token: str | None) -> tuple[str | None, int]:
        """Read result pages from ``token`` and start saving new results as they come (the
        page's items read back from `_inbatch` in one trip to a worker thread).

        Returns the token to resume from next time (the last page's, which stays valid while
        results arrive) and how many new results were found.
        """
        batches = self._client.batches
        new = 0
        while True:
            page = await batches.results(batch_id, page_token=token)
            results = {r.batch_request_id: r for r in page.results}
            for item in await self._inbatch.take(i for i in results if i not in self._saving):
                self._saving.add(item.id)  # later pages and sweeps skip it
                new += 1
                await self._slots.acquire()
                task = asyncio.ensure_future(self._save(item, results[item.id], time.time()))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            if page.next_page_token is None:
                return token, new
            token = page.next_page_token

    async def _save(self, item: Item, result: BatchResult, seen: float) -> None:
        try:
            record, outcome = await self._outcome_of(item, result, seen)
            await self._end(item, record, outcome)
        finally:
            self._slots.release()
            self._saving.discard(item.id)

    async def _outcome_of(
        self, item: Item, result: BatchResult, seen: float
    ) -> tuple[ManifestRecord, Outcome]:
        response = result.response
        if result.status == "failed":
            error = BatchRequestError(result.error_message or "failed", code=result.error_code)
            return self._finish(item, "failed", error=error)
        assert response is not None
        self.progress.generated += 1
        cost = response.usage.cost_in_usd_ticks if response.usage else None
        self.progress.cost_in_usd_ticks += cost or 0
        self._emit("generated", item.id, images=len(response.images), line=item.request.line)
        if result.status == "blocked":
            blocked = XAIImagesError(result.error_message or "withheld by moderation")
            return self._finish(item, "blocked", error=blocked, billed=True, cost=cost)
        saved, pending, errors = await self._save_images(item, response.images)
        finished = float(response.created) if response.created else seen
        now = time.time()
        if not 0 <= now - finished < 30 * 86400:
            finished = seen  # the server's clock is not ours (a test's fake clock)
        if errors:
            status: ItemStatus = "failed"
            if all(isinstance(e, ImageExpiredError) for e in errors):
                status, pending = "expired", []
            return self._finish(
                item, status, error=errors[0], files=saved, pending=pending, billed=True, cost=cost
            )
        self.progress.result_waits.append(now - finished)
        self.progress.seen_waits.append(now - seen)
        # The model that answered and the prompts it revised, as a real-time item records them.
        revised = {image.index: image.revised_prompt for image in response.images}
        return self._finish(
            item, "ok", files=saved, billed=True, cost=cost, model=response.model, revised=revised
        )

    async def _settle_rest(self, status: ItemStatus, why: str) -> None:
        """End every item still waiting for its result with ``status`` (saves are drained)."""
        async for items in self._inbatch.every():
            for item in items:
                error: XAIImagesError = (
                    ImageExpiredError(why) if status == "expired" else BatchRequestError(why)
                )
                await self._end(item, *self._finish(item, status, error=error))

    async def _settle_unlisted(self, batch_id: str) -> None:
        """Items of a finished batch without a result: their state says why."""
        if not self._inbatch:
            return
        states: dict[str, BatchRequestState] = {}
        async for state in self._client.batches.list_requests(batch_id):
            states[state.batch_request_id] = state
            if len(states) >= PAGE:
                await self._settle_listed(states)
                states = {}
        await self._settle_listed(states)
        await self._settle_rest("failed", "the batch does not hold this request")

    async def _settle_listed(self, states: dict[str, BatchRequestState]) -> None:
        for item in await self._inbatch.take(states):
            state = states[item.id]
            if state.state == "cancelled":
                error = BatchRequestError("Request was cancelled", code=1)
                record, outcome = self._finish(item, "failed", error=error)
            else:
                unknown = OutcomeUnknownError(
                    f"the batch finished but lists no result for it (state {state.state})",
                    reason="no-result",
                )
                record, outcome = self._finish(item, "unknown", error=unknown)
            await self._end(item, record, outcome)
