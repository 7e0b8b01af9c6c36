"""The real-time source of the bulk engine: each item is its own API request.

``run_batch(client, requests, output_dir=...)`` (also ``client.bulk(...)``) runs every request
with at most ``concurrency`` API requests in flight (the client's rate limiter spaces their
starts), saves each image as ``{id}-{index}.{ext}``, appends a manifest line per finished item
and yields an `Outcome` as each item finishes. One item failing never stops the others.

Resuming (the engine's one rule, ``_resume.py``): items whose manifest record says ``ok`` and
whose files are intact are skipped. Items that ``failed`` or were ``blocked`` are run again only
with ``retry_failed=True``; a failed item whose images were already generated (billed) is then
downloaded again from its recorded URLs instead of being generated again, while a blocked one is
generated again. Items whose outcome is ``unknown`` (the request was sent, the answer was lost,
it may have been billed) are resent only with ``resend_unknown=True``; the same switch allows
generating again a billed item whose image URLs expired.

Stopping (``stop()``, the first Ctrl-C, leaving the run) stops spending at once: an item whose
request is not on the wire (waiting for a slot, the rate limiter or a retry) is stopped and not
recorded, so a later run sends it; only requests already sent finish.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from .._errors import (
    APIConnectionError,
    APIError,
    APIResponseError,
    ImageBlockedError,
    OutcomeUnknownError,
    ValidationError,
    XAIImagesError,
)
from ._engine import Engine, _Names
from ._outcome import Outcome
from ._records import interrupted_record, item_record
from ._spend import SpendRefused

if TYPE_CHECKING:
    import datetime

    from .._api._models import ImagesResponse
    from ._jobstate import JobState
    from ._manifest import ItemStatus, ManifestRecord
    from ._tally import Item

__all__ = ["BatchRun", "run_batch"]

logger = logging.getLogger("xai_images")


class _NotStarted(Exception):
    """The item's request was not sent (stopped, or refused by the spending seam)."""


class BatchRun(Engine):
    """A running bulk job of real-time requests: iterate it for outcomes as items finish.

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
        *args: Any,
        upload_urls: bool = False,
        upload_expires: datetime.timedelta | float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        # With upload_urls, xAI PUTs the images into the store through signed URLs.
        if upload_urls:
            from ._signed_job import SignedJob

            self._signed = SignedJob(self._store, upload_expires)
        # Items whose task may be stopped before its request goes out, and those stopped so.
        self._running: dict[Item, asyncio.Task[None]] = {}
        self._halted: set[Item] = set()

    def __repr__(self) -> str:
        return f"<BatchRun output_dir={self.target!r} {self.progress!r}>"

    def stop(self) -> None:
        """Stop spending: no request is sent that was not sent already.

        Items waiting for a request slot, the rate limiter or a retry are stopped and not
        recorded (running the same job again sends them); requests on the wire finish and are
        recorded, then iteration ends. Safe to call from a signal handler on the event loop.
        """
        super().stop()
        for item, task in list(self._running.items()):
            if item.response is None and not item.download_only and not item.in_doubt:
                self._halted.add(item)
                task.cancel()

    # -- the source ------------------------------------------------------------------------------

    async def _produce(self, state: JobState) -> None:
        item_slots = asyncio.Semaphore(self._concurrency * 2)
        request_slots = asyncio.Semaphore(self._concurrency)
        names = _Names()
        async for job in self._jobs():
            if self._stop.is_set():
                break
            admitted = await self._admit(job, names, state)
            if admitted is None:
                continue
            item = admitted[0] if isinstance(admitted, tuple) else admitted
            if isinstance(admitted, tuple):
                item.prior, item.download_only = admitted[1], True
            self._emit("queued", item.id, line=item.request.line)
            await item_slots.acquire()
            if self._stop.is_set():
                item_slots.release()
                break
            task = asyncio.ensure_future(self._run_item(item, request_slots, item_slots))
            self._running[item] = task
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await self._drain()

    async def _run_item(
        self, item: Item, request_slots: asyncio.Semaphore, item_slots: asyncio.Semaphore
    ) -> None:
        assert self._writer is not None
        try:
            try:
                record, outcome = await self._process(item, request_slots)
            except _NotStarted:
                return
            except asyncio.CancelledError:
                if item in self._halted and not item.in_doubt:
                    return  # stopped before its request went out: not recorded
                interrupted = interrupted_record(item, self.output_dir)
                if interrupted is not None:
                    await asyncio.shield(self._writer.write(interrupted))
                raise
            except Exception as exc:  # a bug must not take the other items down
                logger.exception("xai-images batch: item %s failed unexpectedly", item.id)
                record, outcome = self._finish(item, "failed", error=exc)
            await self._settle(record, outcome)
        finally:
            self._running.pop(item, None)
            self._halted.discard(item)
            item_slots.release()

    async def _process(
        self, item: Item, request_slots: asyncio.Semaphore
    ) -> tuple[ManifestRecord, Outcome]:
        if item.download_only:
            assert item.prior is not None
            self._emit("started", item.id, line=item.request.line)
            result = await self._download_again(item, item.prior, expired="failed", regenerate=True)
            if result is not None:
                return result
            # The URLs expired and the caller allowed paying again: generate afresh.
            item.download_only = False
        async with request_slots:
            if self._stop.is_set():
                # Stopped while waiting for a request slot: not started, so not recorded.
                raise _NotStarted
            response = await self._send(item)
            if isinstance(response, tuple):
                return response
        item.response = response
        self.progress.generated += 1
        ticks = response.usage.cost_in_usd_ticks if response.usage else None
        self.progress.cost_in_usd_ticks += ticks or 0
        images = response.images
        self._emit("generated", item.id, images=len(images), line=item.request.line)
        if not images:
            if self._signed is not None:
                self._signed.forget(item)
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

    async def _send(self, item: Item) -> ImagesResponse | tuple[ManifestRecord, Outcome]:
        """Send the item's request once (with the client's retries) between a reservation and
        its settlement; an error that ends the item comes back as its record and outcome."""
        try:
            reservation = await self._spend.reserve(item.request, item_id=item.id)
        except SpendRefused as exc:
            # Not sent, not recorded: a rerun with a higher budget does it.
            self._budget_reached(exc.reason)
            raise _NotStarted from None
        except ValidationError as exc:  # a model the price table does not list
            return self._finish(item, "failed", error=exc)
        self.progress.started += 1
        self._emit("started", item.id, line=item.request.line)
        paid: int | None = None
        try:
            if self._signed is not None:
                output: Any = self._output
                response = await self._signed.send(self._client, item, output)
            else:
                response = await self._client.images.send(item.request, origin=item)
        except OutcomeUnknownError as exc:
            await self._spend.settle(reservation, None)
            return self._finish(item, "unknown", error=exc)
        except (APIError, ValidationError, XAIImagesError) as exc:
            if isinstance(exc, APIResponseError):  # answered 2xx: maybe billed
                await self._spend.settle(reservation, None)
            else:  # refused, or never reached the server
                await self._spend.release(reservation)
            if isinstance(exc, APIConnectionError) and self.progress.generated == 0:
                # Nothing got through yet: the API is unreachable, stop instead of failing
                # every item one by one. The others are not recorded, so a re-run resumes.
                logger.error("xai-images batch: stopping, the API is unreachable: %s", exc)
                self.stop()
            return self._finish(item, "failed", error=exc)
        except BaseException:
            # Cancelled: a request on the wire may be paid; one never sent is not.
            if item.in_doubt:
                await asyncio.shield(self._spend.settle(reservation, None))
            else:
                if item in self._halted:
                    self.progress.started -= 1  # stopped before it went out: not started
                await asyncio.shield(self._spend.release(reservation))
            raise
        if response.usage is not None:
            paid = response.usage.cost_in_usd_ticks
        if self._budget is not None and item.request.model is None:
            self._budget.learn_default_model(response.model)
        await self._spend.settle(reservation, paid)
        return response

    def _record(self, item: Item, status: ItemStatus, **fields: Any) -> ManifestRecord:
        fields.pop("cost", None)  # the answer (or the earlier record) carries it
        return item_record(item, status, self.output_dir, **fields)


# The engine behind ``AsyncClient.bulk`` (which documents every argument):
# ``run_batch(client, requests, ...)`` is ``client.bulk(requests, ...)``.
run_batch = BatchRun
