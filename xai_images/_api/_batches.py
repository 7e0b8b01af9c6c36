"""``client.batches``: xAI's Batch API.

Reads (``get``, ``list``, ``list_requests``, ``results``) and ``cancel`` are retried freely: they
change nothing, or nothing twice. ``create`` and ``add`` are never resent blindly once their body
went out: an add whose answer was lost is reconciled by listing the batch's requests and sending
only the ids that are missing; a create whose answer was lost, by looking the batch up by name.
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import datetime
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from .._config import positive_number
from .._errors import (
    APIResponseError,
    APIStatusError,
    BadRequestError,
    BatchTimeoutError,
    OutcomeUnknownError,
    ValidationError,
)
from .._wire._paths import segment
from .._wire._retry import sleep
from ._batch_models import (
    Batch,
    BatchRequestState,
    ResultsPage,
    parse_batch,
    parse_request_state,
    parse_result,
)
from ._inputs import resolve_image
from ._paging import next_token, pages, query
from ._requests import EditRequest, GenerateRequest, Request, derive_id

if TYPE_CHECKING:
    from ._requester import Requester

__all__ = ["BatchLimits", "Batches", "encode_entry"]

_logger = logging.getLogger("xai_images")
_MB = 1024 * 1024
# Bytes of ``{"batch_requests":[`` ... ``]}`` around the entries, with room to spare.
_CALL_OVERHEAD = 64
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def _positive_number(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"BatchLimits.{attribute.name} must be > 0, got {value!r}")


@attrs.frozen
class BatchLimits:
    """The Batch API's limits as the client keeps them (the stricter documented figures).

    Attributes:
        add_calls: add calls allowed per ``add_window`` seconds, team-wide (documented as 100
            in the older revision and 1000 in the newer one); a local pacer keeps under it.
        add_window: the rolling window of ``add_calls``, in seconds.
        max_call_bytes: the largest body of one add call (25 MB).
        max_request_bytes: the largest single request; a bigger one is refused locally.
        max_requests_per_call: most requests in one add call.
        creates_per_second: batch creations per second (1 in the older revision, 2 newer).
        page_size: entries asked for per page of ``/requests`` and ``/results`` (1 to 1000).
    """

    add_calls: int = attrs.field(default=100, validator=_positive_number)
    add_window: float = attrs.field(default=30.0, validator=_positive_number)
    max_call_bytes: int = attrs.field(default=25 * _MB, validator=_positive_number)
    max_request_bytes: int = attrs.field(default=25 * _MB, validator=_positive_number)
    max_requests_per_call: int = attrs.field(default=1000, validator=_positive_number)
    creates_per_second: float = attrs.field(default=1.0, validator=_positive_number)
    page_size: int = attrs.field(default=1000, validator=_positive_number)


class _Pacer:
    """A rolling-window limiter: at most ``calls`` starts in any ``window`` seconds."""

    def __init__(self, calls: int, window: float) -> None:
        self.calls = calls
        self.window = window
        self._starts: collections.deque[float] = collections.deque()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                while self._starts and self._starts[0] <= now - self.window:
                    self._starts.popleft()
                if len(self._starts) < self.calls:
                    self._starts.append(now)
                    return
                await asyncio.sleep(self._starts[0] + self.window - now)


def _kind_key(request: Request) -> str:
    return "image_edit" if isinstance(request, EditRequest) else "image_generation"


async def encode_entry(request: Request, request_id: str) -> bytes:
    """The JSON of one ``batch_requests`` entry (edit inputs read and resolved).

    Raises:
        ValidationError: a bad field or an unreadable input, naming the field.
    """
    if isinstance(request, EditRequest):
        request.check_body()
        inputs = [await resolve_image(value, name) for name, value in request.named_inputs()]
        body = request.to_body(inputs)
    elif isinstance(request, GenerateRequest):
        body = request.to_body()
    else:
        raise ValidationError("request", request, "a GenerateRequest or an EditRequest")
    entry = {"batch_request_id": request_id, "batch_request": {_kind_key(request): body}}
    text = json.dumps(entry, ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8")


def _request_id(request: Request) -> str:
    if request.id is None:
        return derive_id(request)  # the same derived id a bulk job would give it
    return request.id


class Batches:
    """xAI's Batch API: ``client.batches.create(...)``, ``add``, ``results``, ...

    Requests are queued server-side, do not count towards the real-time rate limit, and finish
    over minutes to hours in any order; each result's image URLs expire an hour after it
    finished. For whole bulk jobs (manifest, resume, saving) use
    ``client.bulk(..., via="batch-api")``.

    Attributes:
        limits: the :class:`BatchLimits` kept by the local pacers; assign a new one to change
            them (e.g. ``BatchLimits(add_calls=1000)`` for the newer documented limit).
    """

    def __init__(self, requester: Requester, limits: BatchLimits | None = None) -> None:
        self._requester = requester
        self._limits = limits or BatchLimits()
        self._add_pacer = _Pacer(self._limits.add_calls, self._limits.add_window)
        self._create_pacer = _Pacer(1, 1.0 / self._limits.creates_per_second)

    def __repr__(self) -> str:
        return f"<Batches {self._requester!r}>"

    @property
    def limits(self) -> BatchLimits:
        """The limits the pacers keep."""
        return self._limits

    @limits.setter
    def limits(self, value: BatchLimits) -> None:
        if not isinstance(value, BatchLimits):
            raise ValidationError("limits", value, "a BatchLimits")
        self._limits = value
        self._add_pacer = _Pacer(value.add_calls, value.add_window)
        self._create_pacer = _Pacer(1, 1.0 / value.creates_per_second)

    # -- batches ---------------------------------------------------------------------------------

    async def create(self, name: str, *, input_file_id: str | None = None) -> Batch:
        """Create a batch; with ``input_file_id``, from an uploaded JSONL file (sealed).

        The name should be unique among your batches: when the answer to the create is lost,
        the batch is looked up by name (and file) instead of being created again.

        Raises:
            APIStatusError: the API refused (e.g. 404 for an unknown file, 429 over the limit
                after retries).
            OutcomeUnknownError: the answer was lost and the batch could not be found by name.
        """
        if not isinstance(name, str) or not name:
            raise ValidationError("name", name, "a non-empty string")
        body: dict[str, Any] = {"name": name}
        if input_file_id is not None:
            body["input_file_id"] = input_file_id
        for _ in range(3):
            await self._create_pacer.acquire()
            try:
                answer = await self._requester.send("POST", "/batches", body=body, reconciled=True)
            except (OutcomeUnknownError, APIStatusError) as exc:
                if isinstance(exc, APIStatusError) and exc.status_code < 500:
                    raise
                # No answer, or a 5xx that may have come after the batch was made: look first.
                found = await self.find(name, input_file_id=input_file_id)
                if found is not None:
                    _logger.debug("create of batch %r: answer lost, found it by name", name)
                    return found
                # Not listed: the create never ran, so sending it again creates one batch.
                continue
            with answer.reading():
                return parse_batch(answer.body, "POST /batches", request_id=answer.request_id)
        raise OutcomeUnknownError(
            f"creating batch {name!r}: the answer was lost three times and no batch of that "
            "name is listed",
            reason="disconnected",
            method="POST",
            path="/batches",
        )

    async def find(self, name: str, *, input_file_id: str | None = None) -> Batch | None:
        """The most recently created batch named ``name`` (and from ``input_file_id``, if
        given), or ``None``."""
        matches: builtins.list[tuple[datetime.datetime, int, Batch]] = []
        async for batch in self.list():
            if batch.name != name:
                continue
            if input_file_id is not None and batch.input_file_id not in (None, input_file_id):
                continue
            # Newest by create_time; listing order breaks ties (and stands in for no time).
            matches.append((batch.create_time or _EPOCH, len(matches), batch))
        return max(matches, key=lambda m: (m[0], m[1]))[2] if matches else None

    async def get(self, batch_id: str) -> Batch:
        """The batch and its counters (retried freely).

        Raises:
            NotFoundError: no such batch.
        """
        path = f"/batches/{segment(batch_id, 'batch_id')}"
        answer = await self._requester.send("GET", path, idempotent=True)
        return parse_batch(answer.body, f"GET {path}", request_id=answer.request_id)

    async def list(self, *, page_size: int | None = None) -> AsyncIterator[Batch]:
        """Every batch of the team, page by page."""
        limit = {"limit": page_size or self._limits.page_size}
        async for items, answer in pages(self._requester, "/batches", "batches", limit):
            for item in items:
                yield parse_batch(item, "GET /batches", request_id=answer.request_id)

    async def list_requests(
        self, batch_id: str, *, page_size: int | None = None
    ) -> AsyncIterator[BatchRequestState]:
        """Every request of a batch and its state, page by page (in the server's order)."""
        path = f"/batches/{segment(batch_id, 'batch_id')}/requests"
        limit = {"limit": page_size or self._limits.page_size}
        async for items, answer in pages(self._requester, path, "batch_request_metadata", limit):
            with answer.reading():
                states = [parse_request_state(item, f"GET {path}") for item in items]
            for state in states:
                yield state

    async def request_ids(self, batch_id: str) -> set[str]:
        """The ids of every request the batch holds (to reconcile lost adds)."""
        return {state.batch_request_id async for state in self.list_requests(batch_id)}

    async def results(
        self, batch_id: str, *, page_token: str | None = None, page_size: int | None = None
    ) -> ResultsPage:
        """One page of results (available while the batch runs, in no particular order).

        Start without ``page_token``; pass each page's ``next_page_token`` until it is
        ``None``. A token stays usable while more results arrive, so polling can resume from
        the last page's token.

        Raises:
            NotFoundError: no such batch, or it expired (its results are gone).
        """
        path = f"/batches/{segment(batch_id, 'batch_id')}/results"
        params = {"limit": page_size or self._limits.page_size, "pagination_token": page_token}
        answer = await self._requester.send("GET", path + query(params), idempotent=True)
        body = answer.body
        entries = body.get("results") if isinstance(body, Mapping) else None
        if entries is None:
            entries = []
        with answer.reading():
            if not isinstance(entries, list):
                raise APIResponseError(f"GET {path}: results is not a list")
            results = tuple(
                parse_result(
                    e, answer.payloads, transfers=self._requester.transfers, where=f"GET {path}"
                )
                for e in entries
            )
        return ResultsPage(results, next_token(body), page_token, request_id=answer.request_id)

    async def cancel(self, batch_id: str) -> Batch:
        """Cancel a batch: pending requests are dropped, finished results stay readable.

        Cancelling twice changes nothing, so this is retried freely.
        """
        path = f"/batches/{segment(batch_id, 'batch_id')}:cancel"
        # No body, as xAI's own SDK sends it.
        answer = await self._requester.send("POST", path, idempotent=True)
        return parse_batch(answer.body, f"POST {path}", request_id=answer.request_id)

    async def wait(
        self, batch_id: str, *, poll_interval: float = 5.0, timeout: float | None = 86_400.0
    ) -> Batch:
        """Poll `get` until nothing is left to do; return the last `Batch` seen.

        Returns once the batch has requests and none is pending, or once it was cancelled (by
        the caller or by xAI: see `Batch.cancel_by_xai_message`) or has expired. A batch
        created from a file has no requests while its file is validated: that is not done.

        Args:
            poll_interval: seconds between polls (default 5).
            timeout: overall seconds to wait, on a monotonic clock (default a day; ``None``:
                no limit). The batch keeps running on the server after a timeout.

        Raises:
            BatchTimeoutError: still running after ``timeout`` (``.batch`` is the last seen).
            APIStatusError: a poll failed (404 unknown batch, 401, ...): raised at once.
            ValidationError: a bad ``batch_id``, ``poll_interval`` or ``timeout``.
        """
        segment(batch_id, "batch_id")
        if not positive_number(poll_interval):
            raise ValidationError("poll_interval", poll_interval, "a positive number of seconds")
        if timeout is not None and not positive_number(timeout):
            raise ValidationError("timeout", timeout, "a positive number of seconds or None")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            batch = await self.get(batch_id)
            if batch.done or batch.expired():
                return batch
            now = time.monotonic()
            if deadline is not None and timeout is not None and now >= deadline:
                raise BatchTimeoutError(
                    f"batch {batch_id} did not finish within {timeout:g} s "
                    f"({batch.state.num_pending} of {batch.state.num_requests} request(s) "
                    "pending); it keeps running on the server",
                    batch=batch,
                    timeout=timeout,
                )
            wait = poll_interval if deadline is None else min(poll_interval, deadline - now)
            await sleep(wait)

    # -- adding ----------------------------------------------------------------------------------

    async def add(
        self,
        batch_id: str,
        requests: Iterable[Request],
        *,
        on_added: Callable[[Sequence[str]], Awaitable[None]] | None = None,
        on_sending: Callable[[Sequence[str]], Awaitable[None]] | None = None,
    ) -> builtins.list[str]:
        """Add requests to a batch, split into calls under the size and call-rate limits.

        Each request's ``id`` becomes its ``batch_request_id`` (one derived from its content
        when unset, as in a bulk job). Calls are paced by :attr:`limits`. A call whose answer
        was lost is reconciled: the batch's requests are listed and only the missing ids are
        sent again, so no request is added twice.

        Args:
            on_sending: awaited with the ids of each call before it is sent.
            on_added: awaited with the ids of each call once the batch holds them.

        Returns:
            the ids added, in order.

        Raises:
            ValidationError: a request is invalid or over ``limits.max_request_bytes`` (naming
                its id); checked for every request before the first call.
            APIStatusError: the API refused a call (e.g. 400 naming a bad request; the calls
                before it were added).
        """
        entries: builtins.list[tuple[str, bytes]] = []
        seen: set[str] = set()
        for request in requests:
            request_id = _request_id(request)
            if request_id in seen:
                raise ValidationError("id", request_id, "unique within the batch")
            seen.add(request_id)
            entries.append((request_id, await self.checked_entry(request, request_id)))
        added: builtins.list[str] = []
        for chunk in self.chunks(entries):
            ids = [request_id for request_id, _ in chunk]
            if on_sending is not None:
                await on_sending(ids)
            await self.add_call(batch_id, chunk)
            added.extend(ids)
            if on_added is not None:
                await on_added(ids)
        return added

    async def checked_entry(self, request: Request, request_id: str) -> bytes:
        """The encoded entry of ``request``, refused locally when over the size limit.

        Raises:
            ValidationError: a bad request, or one over ``limits.max_request_bytes``.
        """
        entry = await encode_entry(request, request_id)
        if len(entry) > self._limits.max_request_bytes:
            raise ValidationError(
                f"{request_id}",
                f"<{len(entry):,} bytes>",
                f"at most {self._limits.max_request_bytes:,} bytes per batch request",
            )
        return entry

    def chunks(
        self, entries: Sequence[tuple[str, bytes]]
    ) -> builtins.list[builtins.list[tuple[str, bytes]]]:
        """Split encoded entries into calls under the per-call size and count limits."""
        limit = self._limits.max_call_bytes - _CALL_OVERHEAD
        calls: builtins.list[builtins.list[tuple[str, bytes]]] = []
        current: builtins.list[tuple[str, bytes]] = []
        size = 0
        for entry in entries:
            grown = size + len(entry[1]) + 1
            if current and (grown > limit or len(current) >= self._limits.max_requests_per_call):
                calls.append(current)
                current, grown = [], len(entry[1]) + 1
            current.append(entry)
            size = grown
        if current:
            calls.append(current)
        return calls

    async def add_call(self, batch_id: str, chunk: Sequence[tuple[str, bytes]]) -> None:
        """Send one add call of encoded entries; reconcile a lost answer (see :meth:`add`).

        Raises:
            APIStatusError: the API refused the call (nothing of it was added).
            OutcomeUnknownError: answers were lost three times in a row.
        """
        path = f"/batches/{segment(batch_id, 'batch_id')}/requests"
        todo = list(chunk)
        for attempt in range(3):
            await self._add_pacer.acquire()
            data = b'{"batch_requests":[' + b",".join(e for _, e in todo) + b"]}"
            try:
                await self._requester.send(
                    "POST", path, content=(data, "application/json"), reconciled=True
                )
                return
            except BadRequestError:
                if attempt == 0:
                    raise
                # A resend refused: the lost call may have landed after the listing (a slow
                # server); if the batch now holds every id, the call did its work.
                held = await self.request_ids(batch_id)
                if all(request_id in held for request_id, _ in todo):
                    return
                raise
            except APIStatusError as exc:
                if exc.status_code < 500:
                    raise
                # A 5xx may come from a proxy after the batch took the requests: check first.
                todo = await self._missing(batch_id, todo, len(chunk))
                if not todo:
                    return
            except OutcomeUnknownError:
                todo = await self._missing(batch_id, todo, len(chunk))
                if not todo:
                    return
        raise OutcomeUnknownError(
            f"adding to batch {batch_id}: the answer was lost three times; "
            f"{len(todo)} request(s) not listed",
            reason="disconnected",
            method="POST",
            path=path,
        )

    async def _missing(
        self, batch_id: str, todo: builtins.list[tuple[str, bytes]], total: int
    ) -> builtins.list[tuple[str, bytes]]:
        """The entries of ``todo`` the batch does not hold (after an add without an answer)."""
        held = await self.request_ids(batch_id)
        missing = [entry for entry in todo if entry[0] not in held]
        _logger.debug(
            "add to %s: no answer; %d of %d requests still missing", batch_id, len(missing), total
        )
        return missing
