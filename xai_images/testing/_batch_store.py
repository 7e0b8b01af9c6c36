"""The fake Batch API's state: batches, their requests, processing on the clock, and results.

Time comes from ``settings.clock``. Each added request gets a processing time drawn uniformly
between 0 and twice ``settings.batch_processing_seconds`` (ties broken at random), so results
complete in a random order and every request is done within twice the mean. Work is done
lazily: every Batch API call first settles what is due by the clock; with the real clock
(``time.time``) a timer also settles each request when it falls due, so the ledger moves
without polling. With another clock (a ``FakeClock``), state moves on the next Batch API call
after the clock is advanced.

A finished request is billed like a real-time call (moderated images too, failures not); its
image URLs expire ``settings.batch_url_ttl`` seconds after it finished.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

import attrs

from ._core import ServerCore
from ._files import FilesAPI
from ._images_api import deliverable, model_refusal, ticks_for
from ._prices import FakeModel
from ._settings import DEFAULT_MODEL
from ._uploads import upload_images, upload_urls_of
from ._validation import Problem, validate_body

__all__ = ["KINDS", "Batch", "BatchRequest", "BatchStore", "check_item", "parse_line"]

# Request kinds inside ``batch_request`` that the fake serves, and whether each is an edit.
KINDS = {"image_generation": False, "image_edit": True}
_LINE_URLS = {"/v1/images/generations": "image_generation", "/v1/images/edits": "image_edit"}
_OTHER_LINE_URLS = frozenset(
    {
        "/v1/chat/completions",
        "/v1/responses",
        "/v1/videos/generations",
        "/v1/videos",
        "/v1/videos/edits",
        "/v1/videos/extensions",
    }
)
_ERROR_SHAPES = ("string", "status", "vercel", "top_level")
# gRPC status codes the Batch API reports per request.
CODE_CANCELLED, CODE_INVALID, CODE_INTERNAL = 1, 3, 13


@attrs.define(eq=False)
class BatchRequest:
    """One request of a batch."""

    id: str
    kind: str
    body: dict[str, Any]
    created: float
    due: float
    problem: Problem | None = None
    state: str = "pending"
    finished: float | None = None
    error: tuple[int, str] | None = None
    response: dict[str, Any] | None = None
    error_shape: str = "status"
    delivered: bool = False


@attrs.define(eq=False)
class Batch:
    """One batch and its requests (in add order) and results (in finish order)."""

    id: str
    name: str
    created: float
    expires: float
    key_id: str
    input_file_id: str | None = None
    cancel_time: float | None = None
    cancel_by_xai_message: str | None = None
    validated: bool = True
    requests: dict[str, BatchRequest] = attrs.Factory(dict)
    finished: list[BatchRequest] = attrs.Factory(list)
    cancelled: list[BatchRequest] = attrs.Factory(list)
    counts: dict[str, int] = attrs.Factory(
        lambda: {"pending": 0, "succeeded": 0, "failed": 0, "cancelled": 0}
    )

    @property
    def sealed(self) -> bool:
        """A batch created from a file takes no added requests."""
        return self.input_file_id is not None


def check_item(
    kind: str, body: Any, models: Sequence[FakeModel]
) -> tuple[Problem | None, str | None]:
    """Check a request body: (a problem that refuses it outright, or one it will fail with).

    Returns ``(refusal, None)`` when the body does not deserialize (a 422 for a real-time
    call), ``(None, failure)`` for a bad value the request will fail with once processed, and
    ``(None, None)`` for a good body.
    """
    if not isinstance(body, dict):
        return (400, f"{kind}: the body must be a JSON object."), None
    problem = validate_body(body, edit=KINDS[kind], batch=True)
    if problem is None:
        # A model the fake does not list fails that request alone, unbilled.
        return None, model_refusal(body, models)
    status, message = problem
    if status == 422:
        return problem, None
    return None, message


def parse_line(text: str) -> tuple[str, str, dict[str, Any]] | str:
    """A JSONL line as ``(custom_id, kind, body)``, or why it is invalid."""
    try:
        line = json.loads(text)
    except ValueError:
        return "not valid JSON."
    if not isinstance(line, dict):
        return "not a JSON object."
    custom_id = line.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return "custom_id: a non-empty string is required."
    if line.get("method", "POST") != "POST":
        return f"method: {line.get('method')!r} is not POST."
    url = line.get("url")
    if url in _OTHER_LINE_URLS:
        return f"url: {url} is not served by this fake (images only)."
    if url not in _LINE_URLS:
        return f"url: {url!r} is not a batch endpoint."
    body = line.get("body")
    if not isinstance(body, dict):
        return "body: a JSON object is required."
    return custom_id, _LINE_URLS[url], body


class BatchStore:
    """Every batch, and the processing queue ordered by the clock."""

    def __init__(self, core: ServerCore, files: FilesAPI) -> None:
        self._core = core
        self._files = files
        self.batches: dict[str, Batch] = {}
        # (due, tie-break, seq, batch id, request id or "" for a file validation)
        self._queue: list[tuple[float, float, int, str, str]] = []
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._running = False
        # PUTs to ``output.upload_urls`` of finished requests, still in flight.
        self._uploading: set[asyncio.Task[None]] = set()

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Allow the real-clock timer (the server is serving)."""
        self._running = True
        self._schedule()

    def stop(self) -> None:
        """Cancel the timer and any upload still in flight."""
        self._running = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in self._uploading:
            task.cancel()

    async def uploads_done(self) -> None:
        """Wait for the PUTs of finished requests to their ``output.upload_urls``."""
        while self._uploading:
            await asyncio.gather(*self._uploading, return_exceptions=True)

    def _schedule(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._running or not self._queue or self._core.settings.clock is not time.time:
            return
        delay = max(0.0, self._queue[0][0] - time.time())
        self._timer = asyncio.get_running_loop().call_later(delay, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self.settle()

    # --- changes ------------------------------------------------------------------------------

    def create(self, name: str, input_file_id: str | None) -> Batch:
        """A new batch (a file batch is validated ``batch_validation_seconds`` later)."""
        core = self._core
        now = core.now()
        key_id = str(uuid.uuid5(uuid.NAMESPACE_URL, "xai-fake-key:" + core.api_key))
        batch = Batch(
            id=f"batch_{uuid.uuid4()}",
            name=name,
            created=now,
            expires=now + core.settings.batch_ttl,
            key_id=key_id,
            input_file_id=input_file_id,
            validated=input_file_id is None,
        )
        self.batches[batch.id] = batch
        if input_file_id is not None:
            self._push(now + core.settings.batch_validation_seconds, batch.id, "")
        core.ledger.batches_created += 1
        core.wake_waiters()
        self._schedule()
        return batch

    def add(self, batch: Batch, items: list[tuple[str, str, dict[str, Any], str | None]]) -> None:
        """Queue ``(id, kind, body, failure)`` items on ``batch``, all checked already."""
        now = self._core.now()
        for request_id, kind, body, failure in items:
            self._add_one(batch, request_id, kind, body, failure, now)
        self._core.ledger.batch_requests_added += len(items)
        self._core.wake_waiters()
        self._schedule()

    def _add_one(
        self,
        batch: Batch,
        request_id: str,
        kind: str,
        body: dict[str, Any],
        failure: str | None,
        now: float,
    ) -> None:
        mean = self._core.settings.batch_processing_seconds
        due = now + 2.0 * mean * self._core.random()
        problem: Problem | None = None if failure is None else (CODE_INVALID, failure)
        batch.requests[request_id] = BatchRequest(request_id, kind, body, now, due, problem)
        batch.counts["pending"] += 1
        self._push(due, batch.id, request_id)

    def cancel(self, batch: Batch, *, message: str | None = None) -> None:
        """Cancel ``batch``: pending requests become cancelled; finished ones stay.

        Args:
            message: set as ``cancel_by_xai_message`` (xAI cancelled the batch itself).
        """
        if batch.cancel_time is not None:
            return
        batch.cancel_time = self._core.now()
        batch.cancel_by_xai_message = message
        batch.validated = True
        pending = [r for r in batch.requests.values() if r.state == "pending"]
        order = sorted(pending, key=lambda _r: self._core.random())
        for request in order:
            request.state = "cancelled"
            request.finished = batch.cancel_time
            request.error = (CODE_CANCELLED, "Request was cancelled")
            request.error_shape = self._error_shape()
            batch.cancelled.append(request)
        batch.counts["pending"] = 0
        batch.counts["cancelled"] += len(pending)
        self._core.ledger.batch_requests_cancelled += len(pending)
        self._core.wake_waiters()

    def settle(self) -> None:
        """Finish every request (and validate every file) due by the clock."""
        now = self._core.now()
        queue = self._queue
        changed = False
        while queue and queue[0][0] <= now:
            due, _tie, _seq, batch_id, request_id = heapq.heappop(queue)
            batch = self.batches.get(batch_id)
            if batch is None or batch.cancel_time is not None:
                continue
            if not request_id:
                self._validate_file(batch, due)
            else:
                self._finish(batch, batch.requests[request_id], due)
            changed = True
        if changed:
            self._core.wake_waiters()
        self._schedule()

    # --- processing ---------------------------------------------------------------------------

    def _push(self, due: float, batch_id: str, request_id: str) -> None:
        entry = (due, self._core.random(), next(self._seq), batch_id, request_id)
        heapq.heappush(self._queue, entry)

    def _error_shape(self) -> str:
        shape = self._core.settings.batch_error_shape
        if shape == "mixed":
            return _ERROR_SHAPES[int(self._core.random() * len(_ERROR_SHAPES))]
        return shape

    def _validate_file(self, batch: Batch, when: float) -> None:
        batch.validated = True
        stored = self._files.live(batch.input_file_id or "")
        if stored is None:
            self._xai_cancel(batch, when, "JSONL file validation failed: the file is gone.")
            return
        settings = self._core.settings
        lines = [line for line in stored.data.decode("utf-8", "replace").splitlines() if line]
        if not lines or len(lines) > settings.batch_file_max_requests:
            message = f"at most {settings.batch_file_max_requests} requests per file."
            if not lines:
                message = "the file has no requests."
            self._xai_cancel(batch, when, f"JSONL file validation failed: {message}")
            return
        items: list[tuple[str, str, dict[str, Any], str | None]] = []
        seen: set[str] = set()
        for number, text in enumerate(lines, 1):
            parsed = parse_line(text)
            problem: str | None = parsed if isinstance(parsed, str) else None
            if not isinstance(parsed, str):
                custom_id, kind, body = parsed
                model = body.get("model") or DEFAULT_MODEL
                refusal, failure = check_item(kind, body, settings.models)
                if custom_id in seen:
                    problem = f"custom_id {custom_id!r} is not unique in the file."
                elif model in settings.batch_unsupported_models:
                    problem = f"Model {model} is not supported for batch processing."
                elif refusal is not None:
                    problem = refusal[1]
                else:
                    seen.add(custom_id)
                    items.append((custom_id, kind, body, failure))
            if problem is not None:
                # The real message names the model alone; a line number helps everyone else.
                where = "" if "not supported for batch" in problem else f"line {number}: "
                self._xai_cancel(batch, when, f"JSONL file validation failed: {where}{problem}")
                return
        for custom_id, kind, body, failure in items:
            self._add_one(batch, custom_id, kind, body, failure, when)
        self._core.ledger.batch_requests_added += len(items)

    def _xai_cancel(self, batch: Batch, when: float, message: str) -> None:
        batch.cancel_time = when
        batch.cancel_by_xai_message = message

    def _finish(self, batch: Batch, request: BatchRequest, when: float) -> None:
        core = self._core
        settings = core.settings
        ledger = core.ledger
        request.finished = when
        batch.counts["pending"] -= 1
        batch.finished.append(request)
        failure_rate = settings.batch_failure_rate
        if request.problem is None and failure_rate and core.random() < failure_rate:
            message = "Image generation failed: internal error." + settings.fault_label
            request.problem = (CODE_INTERNAL, message)
        if request.problem is not None:
            request.state = "failed"
            request.error = request.problem
            request.error_shape = self._error_shape()
            batch.counts["failed"] += 1
            ledger.batch_requests_failed += 1
            return
        body = request.body
        n: int = body.get("n") or 1
        prompt: str = body["prompt"]
        blocked = bool(settings.batch_moderation_rate) and (
            core.random() < settings.batch_moderation_rate
        )
        response_format = body.get("response_format") or "url"
        uploads = upload_urls_of(body)
        if not settings.batch_b64 or uploads is not None:
            response_format = "url"
        images = core.make_images(
            prompt,
            n,
            response_format,
            expires_at=when + settings.batch_url_ttl,
            blocked=blocked,
        )
        if uploads is not None:
            task = asyncio.ensure_future(upload_images(core, images, uploads))
            self._uploading.add(task)
            task.add_done_callback(self._uploading.discard)
        ticks = ticks_for(body, edit=KINDS[request.kind], models=settings.models)
        core.bill(prompt, n, ticks)
        ledger.batch_images_billed += n
        request.response = {
            "data": images,
            "usage": {"cost_in_usd_ticks": ticks},
            "created": int(when),
            "model": body.get("model") or DEFAULT_MODEL,
        }
        request.state = "succeeded"
        request.error_shape = self._error_shape()
        batch.counts["succeeded"] += 1
        ledger.batch_requests_succeeded += 1

    # --- views --------------------------------------------------------------------------------

    def result_json(self, request: BatchRequest) -> dict[str, Any]:
        """A request's entry in ``/results``, in its error shape."""
        out: dict[str, Any] = {"batch_request_id": request.id}
        shape = request.error_shape
        if request.response is not None:
            if not request.delivered:
                request.delivered = True
                self._core.ledger.images_delivered += deliverable(request.response["data"])
            key = "image_generation"
            if KINDS[request.kind]:
                key = self._core.settings.batch_edit_result_key
            result: dict[str, Any] = {"response": {key: request.response}}
            if shape == "vercel":
                result["error"] = {"code": 0, "message": ""}
            out["batch_result"] = result
            return out
        code, message = request.error or (CODE_INTERNAL, "unknown error")
        if shape == "string":
            out["batch_result"] = {"error": message}
        elif shape == "status":
            out["batch_result"] = {"error": {"code": code, "message": message}}
        elif shape == "vercel":
            out["batch_result"] = {"error": {"code": code, "message": message}}
            out["error_message"] = message
        else:
            out["error"] = {"message": message}
            out["error_message"] = message
        return out

    def results_view(self, batch: Batch) -> list[BatchRequest]:
        """The requests ``/results`` lists, in the order they finished."""
        if self._core.settings.batch_cancelled_in_results:
            return batch.finished + batch.cancelled
        return batch.finished
