"""The Batch API routes (``/v1/batches...``), answering from a ``BatchStore``.

- ``POST /v1/batches`` ``{name, input_file_id?}`` -> the Batch object. A file batch shows
  ``num_requests: 0`` until its JSONL is validated, is cancelled by xAI (with
  ``cancel_by_xai_message``) for a bad line or an unsupported model, and is sealed: adds to it
  get 400. Over ``batch_create_limit`` creations in a rolling second: 429.
- ``GET /v1/batches?limit&pagination_token`` -> ``{batches, pagination_token}``.
- ``GET /v1/batches/{id}`` -> the Batch object: ``batch_id``, ``name``, ``create_time``,
  ``expire_time``, ``create_api_key_id``, ``cancel_time``, ``cancel_by_xai_message``,
  ``input_file_id`` and ``state`` (``num_requests``, ``num_pending``, ``num_success``,
  ``num_error``, ``num_cancelled``); no status field.
- ``POST /v1/batches/{id}/requests`` ``{batch_requests: [{batch_request_id?, batch_request:
  {image_generation|image_edit: body}}]}`` -> ``{}``. The whole call is refused (400) for a
  malformed item, a body that does not deserialize, an unsupported model or a duplicate id;
  413 over ``batch_add_max_bytes``; 429 over ``batch_add_limit`` calls per
  ``batch_add_window`` seconds (rolling, on the clock). A bad value (``n: 20``) is accepted and
  the request fails when processed.
- ``GET /v1/batches/{id}/requests?limit&pagination_token`` -> ``{batch_request_metadata,
  pagination_token}``; ``limit`` at most 1000 (``page_size`` is accepted too).
- ``GET /v1/batches/{id}/results?limit&pagination_token`` -> ``{results, pagination_token}``, in
  the order requests finished; 404 once the batch expired.
- ``POST /v1/batches/{id}:cancel`` -> the Batch object with ``cancel_time``.

Page tokens are opaque; the last page's token is null, ``""`` or absent
(``settings.batch_end_token``). An unknown batch gets 404.
"""

from __future__ import annotations

import collections
import math
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from aiohttp import web

from ._batch_common import (
    decode_token,
    encode_token,
    format_time,
    json_answer,
    page_limit,
    run_scripted,
)
from ._batch_store import KINDS, Batch, BatchRequest, BatchStore, check_item
from ._core import ServerCore
from ._files import FilesAPI
from ._settings import DEFAULT_MODEL

__all__ = ["BatchAPI"]

_ENDPOINT = "xai_api.Image/GenerateImage"
_MAX_LIMIT = 1000

T = TypeVar("T")
Item = tuple[str, str, dict[str, Any], str | None]


class BatchAPI:
    """The Batch API routes."""

    def __init__(self, core: ServerCore, files: FilesAPI) -> None:
        self._core = core
        self._files = files
        self.store = BatchStore(core, files)
        self._creates: collections.deque[float] = collections.deque()
        self._adds: collections.deque[float] = collections.deque()

    def start(self) -> None:
        """Start the real-clock timer."""
        self.store.start()

    def stop(self) -> None:
        """Stop the real-clock timer."""
        self.store.stop()

    def reset_limits(self) -> None:
        """Forget the creations and add calls counted by the rolling limits."""
        self._creates.clear()
        self._adds.clear()

    def routes(self) -> list[web.RouteDef]:
        """The routes to add to the application."""
        one = "/v1/batches/{batch_id:[^/:]+}"
        return [
            web.post("/v1/batches", self._create),
            web.get("/v1/batches", self._list, allow_head=False),
            web.get(one, self._get, allow_head=False),
            web.post(one + ":cancel", self._cancel),
            web.post(one + "/requests", self._add),
            web.get(one + "/requests", self._requests, allow_head=False),
            web.get(one + "/results", self._results, allow_head=False),
        ]

    # --- helpers ------------------------------------------------------------------------------

    def _batch_json(self, batch: Batch) -> dict[str, Any]:
        style = self._core.settings.batch_time_format
        counts = batch.counts
        return {
            "batch_id": batch.id,
            "name": batch.name,
            "create_time": format_time(batch.created, style),
            "expire_time": format_time(batch.expires, style),
            "create_api_key_id": batch.key_id,
            "cancel_time": format_time(batch.cancel_time, style),
            "cancel_by_xai_message": batch.cancel_by_xai_message,
            "input_file_id": batch.input_file_id,
            "state": {
                "num_requests": len(batch.requests),
                "num_pending": counts["pending"],
                "num_success": counts["succeeded"],
                "num_error": counts["failed"],
                "num_cancelled": counts["cancelled"],
            },
        }

    def _meta_json(self, request: BatchRequest) -> dict[str, Any]:
        style = self._core.settings.batch_time_format
        return {
            "batch_request_id": request.id,
            "endpoint": _ENDPOINT,
            "model": request.body.get("model") or DEFAULT_MODEL,
            "state": request.state,
            "create_time": format_time(request.created, style),
            "finish_time": format_time(request.finished, style),
        }

    def _find(self, request: web.Request) -> Batch | web.Response:
        batch_id = request.match_info["batch_id"]
        self.store.settle()
        batch = self.store.batches.get(batch_id)
        if batch is None:
            return self._core.error(404, f"Cannot find batch with ID {batch_id}.")
        return batch

    def _limited(
        self, window: collections.deque[float], limit: int | None, span: float
    ) -> web.Response | None:
        """429 when ``limit`` calls happened in the last ``span`` clock seconds, else count."""
        if limit is None:
            return None
        now = self._core.now()
        while window and window[0] <= now - span:
            window.popleft()
        if len(window) >= limit:
            wait = max(1, math.ceil(window[0] + span - now))
            return self._core.error(
                429,
                f"Rate limit exceeded: at most {limit} calls per {span:g} s.",
                headers={"Retry-After": str(wait)},
            )
        window.append(now)
        return None

    async def _admit(
        self,
        request: web.Request,
        window: collections.deque[float],
        limit: int | None,
        span: float,
    ) -> dict[str, Any] | web.Response:
        """429 past the call limit (see ``_limited``), else the JSON body (or the error it got)."""
        limited = self._limited(window, limit, span)
        if limited is not None:
            return limited
        return await self._core.read_json(request)

    def _page(
        self,
        request: web.Request,
        scope: str,
        items: Sequence[T],
        key: str,
        render: Callable[[T], dict[str, Any]],
    ) -> web.Response:
        """One page of ``items`` (only that page rendered), with the next page's token."""
        core = self._core
        limit = page_limit(request.query, default=100, maximum=_MAX_LIMIT)
        if isinstance(limit, str):
            return core.error(400, limit)
        token = request.query.get("pagination_token") or ""
        start = decode_token(token, scope) if token else 0
        if start is None:
            return core.error(400, "pagination_token: not a token this list gave out.")
        page = items[start : start + limit]
        end = start + len(page)
        body: dict[str, Any] = {key: [render(item) for item in page]}
        if end < len(items):
            body["pagination_token"] = encode_token(scope, end)
        else:
            mark = core.settings.batch_end_token
            if mark != "absent":
                body["pagination_token"] = None if mark == "null" else ""
        return json_answer(body)

    # --- routes -------------------------------------------------------------------------------

    async def _create(self, request: web.Request) -> web.StreamResponse:
        async def run() -> web.StreamResponse:
            core = self._core
            body = await self._admit(request, self._creates, core.settings.batch_create_limit, 1.0)
            if isinstance(body, web.Response):
                return body
            name = body.get("name")
            file_id = body.get("input_file_id")
            if not isinstance(name, str) or not name:
                return core.error(400, "name: a non-empty string is required.")
            if file_id is not None:
                if not isinstance(file_id, str):
                    return core.error(400, "input_file_id: must be a string.")
                if self._files.live(file_id) is None:
                    return core.error(404, f"File {file_id!r} not found.")
            batch = self.store.create(name, file_id)
            return json_answer(self._batch_json(batch))

        return await run_scripted(self._core, request, "create", run)

    async def _list(self, request: web.Request) -> web.StreamResponse:
        async def run() -> web.StreamResponse:
            self.store.settle()
            batches = list(self.store.batches.values())
            return self._page(request, "batches", batches, "batches", self._batch_json)

        return await run_scripted(self._core, request, "list", run)

    async def _on_batch(
        self,
        request: web.Request,
        route: str,
        handle: Callable[[Batch], web.StreamResponse],
    ) -> web.StreamResponse:
        """The scripted reply for ``route``, else ``handle`` the batch named in the path (404)."""

        async def run() -> web.StreamResponse:
            batch = self._find(request)
            return batch if isinstance(batch, web.Response) else handle(batch)

        return await run_scripted(self._core, request, route, run)

    async def _get(self, request: web.Request) -> web.StreamResponse:
        return await self._on_batch(request, "get", lambda b: json_answer(self._batch_json(b)))

    async def _cancel(self, request: web.Request) -> web.StreamResponse:
        def cancel(batch: Batch) -> web.StreamResponse:
            self.store.cancel(batch)
            return json_answer(self._batch_json(batch))

        await request.read()  # no body, or {}: either is fine
        return await self._on_batch(request, "cancel", cancel)

    async def _requests(self, request: web.Request) -> web.StreamResponse:
        def page(batch: Batch) -> web.StreamResponse:
            requests = list(batch.requests.values())
            scope = f"requests:{batch.id}"
            return self._page(request, scope, requests, "batch_request_metadata", self._meta_json)

        return await self._on_batch(request, "requests", page)

    async def _results(self, request: web.Request) -> web.StreamResponse:
        def page(batch: Batch) -> web.StreamResponse:
            if self._core.now() >= batch.expires:
                return self._core.error(
                    404, f"Batch {batch.id} has expired; its results are no longer available."
                )
            view = self.store.results_view(batch)
            render = self.store.result_json
            return self._page(request, f"results:{batch.id}", view, "results", render)

        # Finished requests' images are PUT to their upload URLs before results list them.
        self.store.settle()
        await self.store.uploads_done()
        return await self._on_batch(request, "results", page)

    async def _add(self, request: web.Request) -> web.StreamResponse:
        async def run() -> web.StreamResponse:
            core = self._core
            settings = core.settings
            body = await self._admit(
                request, self._adds, settings.batch_add_limit, settings.batch_add_window
            )
            if isinstance(body, web.Response):
                return body
            entries = body.get("batch_requests")
            for entry in entries if isinstance(entries, list) else ():
                if isinstance(entry, dict) and isinstance(entry.get("batch_request_id"), str):
                    core.ledger.batch_request_adds[entry["batch_request_id"]] += 1
            size = len(await request.read())
            if size > settings.batch_add_max_bytes:
                return core.error(
                    413, f"An add call may carry at most {settings.batch_add_max_bytes} bytes."
                )
            batch = self._find(request)
            if isinstance(batch, web.Response):
                return batch
            items = self._check_items(batch, body)
            if isinstance(items, web.Response):
                return items
            self.store.add(batch, items)
            core.ledger.batch_adds += 1
            core.wake_waiters()
            return json_answer({})

        return await run_scripted(self._core, request, "add", run)

    def _check_items(self, batch: Batch, body: dict[str, Any]) -> list[Item] | web.Response:
        core = self._core
        entries = body.get("batch_requests")
        if not isinstance(entries, list) or not entries:
            return core.error(400, "batch_requests: a non-empty list is required.")
        if batch.cancel_time is not None:
            return core.error(400, f"Batch {batch.id} is cancelled: no requests can be added.")
        if batch.sealed:
            return core.error(
                400, f"Batch {batch.id} was created from a file and is sealed: add nothing."
            )
        if core.now() >= batch.expires:
            return core.error(400, f"Batch {batch.id} has expired.")
        items: list[Item] = []
        seen: set[str] = set()
        for index, entry in enumerate(entries):
            where = f"batch_requests[{index}]"
            if not isinstance(entry, dict):
                return core.error(400, f"{where}: must be an object.")
            request_id = entry.get("batch_request_id")
            if request_id is None:
                request_id = str(uuid.uuid4())
            elif not isinstance(request_id, str) or not request_id:
                return core.error(400, f"{where}.batch_request_id: must be a non-empty string.")
            elif request_id in seen or request_id in batch.requests:
                return core.error(
                    400, f"{where}: batch_request_id {request_id!r} is already in the batch."
                )
            seen.add(request_id)
            wrapped = entry.get("batch_request")
            if not isinstance(wrapped, dict) or len(wrapped) != 1:
                return core.error(400, f"{where}.batch_request: one kind and its body expected.")
            ((kind, request_body),) = wrapped.items()
            if kind not in KINDS:
                return core.error(
                    400, f"{where}.batch_request: kind {kind!r} is not served by this fake."
                )
            refusal, failure = check_item(kind, request_body, core.settings.models)
            if refusal is not None:
                return core.error(400, f"{where}: {refusal[1]}")
            model = request_body.get("model") or DEFAULT_MODEL
            if model in core.settings.batch_unsupported_models:
                return core.error(400, f"Model {model} is not supported for batch processing.")
            items.append((request_id, kind, request_body, failure))
        return items
