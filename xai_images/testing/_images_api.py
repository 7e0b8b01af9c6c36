"""``POST /v1/images/generations``, ``/v1/images/edits``, the deferred poll route and the
image-model listing (``GET /v1/image-generation-models``, priced from ``FakeSettings.models``)."""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs
from aiohttp import web

from ._core import ServerCore, send_json, send_padded
from ._prices import FakeModel, find_model, unknown_model_message
from ._settings import DEFAULT_MODEL, TICKS_PER_INPUT_IMAGE
from ._uploads import upload_images, upload_urls_of
from ._validation import validate_body

__all__ = ["ImageAPI", "deliverable", "model_refusal", "ticks_for"]


@attrs.define
class _Deferred:
    images: list[dict[str, Any]]
    usage: dict[str, Any]
    model: str
    created: int
    polls: int = 0
    delivered: bool = False


def deliverable(images: list[dict[str, Any]]) -> int:
    """How many images carry a ``url`` or ``b64_json``."""
    return sum(1 for i in images if i.get("url") or i.get("b64_json"))


def _store(images: list[dict[str, Any]], options: Any) -> None:
    """Add the published ``file_output`` (or ``storage_error``) of each image when the request
    asked for Files-store output with ``storage_options``."""
    if not isinstance(options, dict):
        return
    filename = options.get("filename")
    for index, image in enumerate(images):
        if not (image.get("url") or image.get("b64_json")):
            continue
        if not isinstance(filename, str) or not filename:
            image["storage_error"] = "storage_options.filename is required"
            continue
        expires = int(time.time()) + int(options.get("expires_after") or 86400)
        output: dict[str, Any] = {
            "file_id": f"file-{uuid.uuid4().hex[:24]}",
            "filename": filename if len(images) == 1 else f"{index}-{filename}",
            "expires_at": expires,
        }
        if options.get("public_url"):
            output["public_url"] = f"https://files.example.invalid/{output['file_id']}"
            output["public_url_expires_at"] = expires
        image["file_output"] = output


def ticks_for(body: dict[str, Any], *, edit: bool, models: Sequence[FakeModel]) -> int:
    """What a generate or edit body costs, in USD ticks: each image at the price of the tier
    served (``models``), and each input image of an edit."""
    n: int = body.get("n") or 1
    inputs = (1 if body.get("image") is not None else len(body.get("images") or ())) if edit else 0
    model = find_model(models, body.get("model") or DEFAULT_MODEL)
    per_image = model.ticks_per_image(body, edit=edit) if model is not None else 0
    return per_image * n + TICKS_PER_INPUT_IMAGE * inputs


def model_refusal(body: dict[str, Any], models: Sequence[FakeModel]) -> str | None:
    """The refusal of a body naming a model the fake does not list, or ``None``."""
    name = body.get("model")
    if name is None or find_model(models, name) is not None:
        return None
    return unknown_model_message(name)


_Handler = Callable[["ImageAPI", web.Request], Awaitable[web.StreamResponse]]


def _admitted(handler: _Handler) -> _Handler:
    """Run ``handler`` only for a request with a known key and within the rate limit; otherwise
    answer with the refusal (401 or 429)."""

    @functools.wraps(handler)
    async def admitted(api: ImageAPI, request: web.Request) -> web.StreamResponse:
        refusal = api._core.check_auth(request) or api._core.check_rate()
        if refusal is not None:
            return refusal
        return await handler(api, request)

    return admitted


class ImageAPI:
    """The real-time image endpoints, answering from a ``ServerCore``."""

    def __init__(self, core: ServerCore) -> None:
        self._core = core
        self._deferred: dict[str, _Deferred] = {}

    def routes(self) -> list[web.RouteDef]:
        """The routes to add to the application."""
        return [
            web.post("/v1/images/generations", self._generations),
            web.post("/v1/images/edits", self._edits),
            web.get("/v1/images/{request_id}", self._poll, allow_head=False),
            web.get("/v1/image-generation-models", self._models, allow_head=False),
            web.get("/v1/image-generation-models/{model_id:.+}", self._model, allow_head=False),
        ]

    @_admitted
    async def _models(self, request: web.Request) -> web.StreamResponse:
        core = self._core
        models = [model.to_json() for model in core.settings.models]
        return web.json_response({"models": models}, headers={"x-request-id": str(uuid.uuid4())})

    @_admitted
    async def _model(self, request: web.Request) -> web.StreamResponse:
        core = self._core
        name = request.match_info["model_id"]
        model = find_model(core.settings.models, name)
        if model is None:
            return core.error(404, unknown_model_message(name))
        return web.json_response(model.to_json(), headers={"x-request-id": str(uuid.uuid4())})

    @_admitted
    async def _generations(self, request: web.Request) -> web.StreamResponse:
        return await self._create(request, edit=False)

    @_admitted
    async def _edits(self, request: web.Request) -> web.StreamResponse:
        return await self._create(request, edit=True)

    async def _create(self, request: web.Request, *, edit: bool) -> web.StreamResponse:
        core = self._core
        script = core.api_queue.popleft() if core.api_queue else None
        # The body is read even for a scripted error, so the ledger shows what was sent.
        parsed = await core.read_json(request)
        if script is not None and script.kind == "error":
            return core.scripted_error(script)
        if isinstance(parsed, web.Response):
            return parsed
        body = parsed
        problem = validate_body(body, edit=edit)
        if problem is not None:
            return core.error(*problem)
        settings = core.settings
        unknown = model_refusal(body, settings.models)
        if unknown is not None:
            core.ledger.unknown_model_refusals += 1
            return core.error(404, unknown)
        if settings.generation_fault_rate and core.random() < settings.generation_fault_rate:
            if core.random() < 0.5:
                return core.error(429, "Random fault: rate limited." + settings.fault_label)
            return core.error(500, "Random fault: internal error." + settings.fault_label)
        if settings.generation_latency > 0:
            await asyncio.sleep(settings.generation_latency)

        n: int = body.get("n") or 1
        prompt: str = body["prompt"]
        ticks = ticks_for(body, edit=edit, models=settings.models)
        core.bill(prompt, n, ticks)
        usage = {"cost_in_usd_ticks": ticks}
        model = body.get("model") or DEFAULT_MODEL

        dropping = script is not None and script.kind == "drop"
        rate = settings.drop_after_billing_rate
        if dropping or (script is None and rate and core.random() < rate):
            core.drop(request)
        if script is not None and script.kind == "hang":
            await asyncio.sleep(script.seconds or 0.0)

        if body.get("deferred"):
            request_id = str(uuid.uuid4())
            stored = core.make_images(prompt, n, "url")
            _store(stored, body.get("storage_options"))
            uploads = upload_urls_of(body)
            if uploads is not None:
                await upload_images(core, stored, uploads)
            self._deferred[request_id] = _Deferred(
                images=stored,
                usage=usage,
                model=model,
                created=int(time.time()),
            )
            return web.json_response(
                {"request_id": request_id}, headers={"x-request-id": str(uuid.uuid4())}
            )

        uploads = upload_urls_of(body)
        response_format = "url" if uploads is not None else body.get("response_format") or "url"
        images = core.make_images(prompt, n, response_format)
        _store(images, body.get("storage_options"))
        if uploads is not None:
            await upload_images(core, images, uploads)
        answer = {"data": images, "usage": usage, "created": int(time.time()), "model": model}
        if script is not None and script.kind in ("bomb", "huge"):
            return await send_padded(
                request, answer, script.size, gzip=script.kind == "bomb", chunked=script.abort
            )
        core.ledger.images_delivered += deliverable(images)
        headers = script.headers if script is not None and script.kind == "ok" else None
        return await send_json(request, answer, headers=headers)

    @_admitted
    async def _poll(self, request: web.Request) -> web.StreamResponse:
        core = self._core
        request_id = request.match_info["request_id"]
        job = self._deferred.get(request_id)
        if job is None:
            return core.error(404, f"Deferred request {request_id!r} not found or expired.")
        headers = {"x-request-id": str(uuid.uuid4())}
        job.polls += 1
        if job.polls <= core.settings.deferred_pending_polls:
            return web.json_response({"status": "pending"}, status=202, headers=headers)
        if core.settings.deferred_fail:
            # The published shape: an error object with a code and a message.
            failure = {"code": "generation_failed", "message": "Image generation failed."}
            return web.json_response({"status": "failed", "error": failure}, headers=headers)
        if not job.delivered:
            job.delivered = True
            core.ledger.images_delivered += deliverable(job.images)
        answer = {
            "status": "done",
            "request_id": request_id,
            "data": job.images,
            "usage": job.usage,
            "created": job.created,
            "model": job.model,
        }
        return web.json_response(answer, headers=headers)
