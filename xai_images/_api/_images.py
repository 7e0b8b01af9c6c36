"""``client.images``: generate and edit, now or deferred, and the deferred polls.

The request fields are described once, on `GenerateRequest` and `EditRequest`
(``_requests.py``); the methods here spell them out as keyword arguments so that editors and
type checkers see them, build the request object, and send it. Two more arguments are per call:

- ``timeout``: a ``Timeout`` or seconds for ``Timeout.request``, for this call only.
- ``max_retries``: retries for this call only.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar

import attrs

from .._config import Timeout, int_at_least, positive_number
from .._errors import DeferredError, NotFoundError, ValidationError
from .._wire._paths import segment
from .._wire._retry import sleep
from ._image_models import ImageModels
from ._inputs import ImageInput, resolve_image
from ._models import DeferredRequest, DeferredStatus, ImagesResponse, parse_images_response
from ._pricing import Estimate, PriceTable
from ._requests import EditRequest, GenerateRequest, Request
from ._resource import Resource
from ._uploads import StoreUploads, collect_uploads, plan_uploads

if TYPE_CHECKING:
    import datetime

    from typing_extensions import Unpack

    from .._results._objstore import StoreOutput
    from .._wire._transport import Answer
    from ._requester import Requester

__all__ = ["CallOptions", "EditFields", "GenerateFields", "Images", "SendOptions"]

_Q = TypeVar("_Q", GenerateRequest, EditRequest)


class CallOptions(TypedDict, total=False):
    """The per-call options every image call takes as keywords.

    - ``timeout``: a ``Timeout``, or seconds for ``Timeout.request``, for this call only.
    - ``max_retries``: retries for this call only.
    """

    timeout: Timeout | float | None
    max_retries: int | None


class SendOptions(CallOptions, total=False):
    """The keywords of ``images.send`` and ``send_deferred``: `CallOptions` and ``origin``,
    handed to event hooks as ``event.origin`` for every event of the call (default: the
    request itself), so that a subscriber can tell calls apart."""

    origin: object


class GenerateFields(CallOptions, total=False):
    """The keyword arguments of ``images.generate`` and ``generate_deferred``: the fields of
    `GenerateRequest` (described there, each one checked against its documented limit) and the
    per-call `CallOptions`."""

    model: str | None
    n: int | None
    quality: str | None
    response_format: str | None
    aspect_ratio: str | None
    resolution: str | None
    user: str | None
    output: Mapping[str, Any] | None
    storage_options: Mapping[str, Any] | None
    extra_body: Mapping[str, Any] | None


class EditFields(GenerateFields, total=False):
    """The keyword arguments of ``images.edit`` and ``edit_deferred``: those of
    `GenerateFields` and the input image(s), ``image`` or ``images`` (see `EditRequest`)."""

    image: ImageInput | None
    images: Sequence[ImageInput] | None


# Statuses of a deferred request that is still running, reported as "pending".
_PENDING = frozenset({"pending", "queued", "processing", "running", "in_progress"})


def _requested(body: Mapping[str, Any]) -> int:
    n = body.get("n", 1)
    return n if isinstance(n, int) and not isinstance(n, bool) else 1


def _check_call_options(timeout: object, max_retries: object) -> None:
    """Check the per-call ``timeout`` and ``max_retries`` before anything is read or sent.

    Raises:
        ValidationError: either is of the wrong type or out of range.
    """
    if timeout is not None and not isinstance(timeout, Timeout) and not positive_number(timeout):
        raise ValidationError("timeout", timeout, "a positive number of seconds, a Timeout or None")
    if max_retries is not None and not int_at_least(max_retries, 0):
        raise ValidationError("max_retries", max_retries, "an int >= 0 or None")


def _deferred_id(answer: Answer, path: str) -> str:
    """The ``request_id`` the answer to a deferred ``POST path`` carries.

    Raises:
        APIResponseError: it carries none.
    """
    request_id = answer.body.get("request_id") if isinstance(answer.body, Mapping) else None
    if not isinstance(request_id, str) or not request_id:
        raise answer.invalid(
            "POST", path, f"the answer to a deferred POST {path} has no request_id"
        )
    return request_id


def _text(value: Any) -> str | None:
    """A server value as text (``None`` for absent, empty or structured values)."""
    if value is None or isinstance(value, (Mapping, list)):
        return None
    return str(value) or None


def _message_of(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        message = value.get("message") or value.get("error")
        return str(message) if message else str(dict(value))
    return str(value)


def _check_keywords(given: Mapping[str, Any], allowed: type[Any]) -> None:
    """Refuse a keyword that the typed dict ``allowed`` does not list (a misspelt field).

    Raises:
        ValidationError: naming the keyword and the typed dict of the allowed ones.
    """
    for name, value in given.items():
        if name not in allowed.__annotations__:
            raise ValidationError(name, value, f"one of the keywords of {allowed.__name__}")


def _build(kind: type[_Q], prompt: str, fields: Mapping[str, Any]) -> tuple[_Q, CallOptions]:
    """The request of ``kind`` the keyword arguments describe, and the per-call options.

    Raises:
        ValidationError: a keyword that is neither a field nor a per-call option (the field's
            own checks run when the request is sent).
    """
    _check_keywords(fields, EditFields if kind is EditRequest else GenerateFields)
    call: CallOptions = {}
    body = dict(fields)
    for name in CallOptions.__annotations__:
        if name in body:
            call[name] = body.pop(name)  # type: ignore[literal-required]
    return kind(prompt, **body), call


class Images(Resource):
    """The image endpoints of a client (``client.images``).

    The request fields are documented on `GenerateRequest` and `EditRequest`.
    """

    _label = "Images of"

    def __init__(self, requester: Requester) -> None:
        super().__init__(requester)
        self.models = ImageModels(requester)
        """The image models and their prices (`ImageModels`)."""

    async def estimate(self, request: Request | Sequence[Request]) -> Estimate:
        """Price a request (or several) from the API's price table, sending no generation.

        Reads ``GET /image-generation-models`` once. Where the request leaves the tier to the
        server (``quality`` unset or ``"auto"``, no ``resolution``, no ``model``) the price is
        the dearest tier it could pick and the estimate says ``worst_case``.

        Raises:
            ValidationError: a request is invalid, or names a model the API does not list
                (field ``model``).
            APIStatusError, APIConnectionError, APIResponseError: reading the listing failed.
        """
        requests = [request] if isinstance(request, (GenerateRequest, EditRequest)) else request
        for one in requests:
            if not isinstance(one, (GenerateRequest, EditRequest)):
                raise ValidationError("request", one, "a GenerateRequest or EditRequest")
            one.validate()
        table = PriceTable(await self.models.list())
        return Estimate.of(table.price(one) for one in requests)

    async def generate(self, prompt: str, **fields: Unpack[GenerateFields]) -> ImagesResponse:
        """Generate images from a text prompt (``POST /images/generations``).

        The keyword arguments (`GenerateFields`) are the fields of `GenerateRequest`, of which
        only those set are sent, and the per-call ``timeout`` and ``max_retries``.

        Raises:
            ValidationError: an argument breaks a documented limit (``timeout`` and
                ``max_retries`` included); nothing was sent.
            APIStatusError: the API answered with an error (a subclass per status).
            APIConnectionError: the API could not be reached (after retries).
            OutcomeUnknownError: the request was sent but the answer was lost: the images may
                have been generated and billed; not retried unless you opted in.
        """
        request, call = _build(GenerateRequest, prompt, fields)
        return await self.send(request, **call)

    async def generate_deferred(
        self, prompt: str, **fields: Unpack[GenerateFields]
    ) -> DeferredRequest:
        """Start a generation and return at once with a `DeferredRequest`.

        The server generates in the background; ``await deferred.wait()`` (or
        `wait_deferred`) polls for the images. Same arguments as `generate`;
        deferred requests return URLs only, so ``response_format="b64_json"`` is refused.

        Raises:
            ValidationError, APIStatusError, APIConnectionError, OutcomeUnknownError: as
                `generate`.
            APIResponseError: the answer carries no ``request_id``.
        """
        request, call = _build(GenerateRequest, prompt, fields)
        return await self.send_deferred(request, **call)

    async def edit(self, prompt: str, **fields: Unpack[EditFields]) -> ImagesResponse:
        """Edit one image (``image=``) or combine up to 5 (``images=``) (``POST /images/edits``).

        The keyword arguments (`EditFields`) are the fields of `EditRequest` and the per-call
        ``timeout`` and ``max_retries``. Each input is a URL, a data URI,
        a local path (``str`` or ``PathLike``), ``bytes``, a binary file object or a
        `FileId`. Local inputs are sent as data URIs typed from their bytes (JPEG, PNG
        or WebP, at most 10 MiB each), in a JSON body. Refer to several inputs in the prompt
        as ``<IMAGE_0>``, ``<IMAGE_1>``, ...

        Raises:
            ValidationError: both or neither of ``image``/``images``, more than 5 images, an
                input that is missing, too big or not an image, or another bad argument;
                nothing was sent.
            APIStatusError, APIConnectionError, OutcomeUnknownError: as `generate`.
        """
        request, call = _build(EditRequest, prompt, fields)
        return await self.send(request, **call)

    async def edit_deferred(self, prompt: str, **fields: Unpack[EditFields]) -> DeferredRequest:
        """Start an edit and return at once with a `DeferredRequest`.

        Same arguments as `edit`; as for `generate_deferred`, URL format only.

        Raises:
            ValidationError: as `edit` (nothing was sent).
            APIError: as `generate_deferred`.
        """
        request, call = _build(EditRequest, prompt, fields)
        return await self.send_deferred(request, **call)

    async def send(self, request: Request, **options: Unpack[SendOptions]) -> ImagesResponse:
        """Send a `GenerateRequest` or `EditRequest` built beforehand.

        What `generate` and `edit` do with their arguments; a bulk job's ``id``
        and ``line`` are not sent, and an edit's relative paths resolve against its
        ``base_dir``. The keywords (`SendOptions`): ``timeout``, ``max_retries`` and
        ``origin``, handed to event hooks as ``event.origin``.

        Raises:
            ValidationError, APIStatusError, APIConnectionError, OutcomeUnknownError: as
                `generate` and `edit`.
        """
        path, body, answer = await self._post(request, options, deferred=False)
        with answer.reading():
            return parse_images_response(
                answer.body,
                answer.payloads,
                request_id=answer.request_id,
                requested=_requested(body),
                transfers=self._requester.transfers,
                where=f"POST {path}",
            )

    async def send_deferred(
        self, request: Request, **options: Unpack[SendOptions]
    ) -> DeferredRequest:
        """Start a request built beforehand as a deferred one (see `generate_deferred`).

        The keywords (`SendOptions`): as `send`.

        Raises:
            ValidationError: as `generate_deferred` (nothing was sent).
            APIError: as `generate_deferred` (``APIStatusError``, ``APIConnectionError``,
                ``OutcomeUnknownError``, ``APIResponseError``).
        """
        path, _body, answer = await self._post(request, options, deferred=True)
        return DeferredRequest(
            _deferred_id(answer, path), x_request_id=answer.request_id, images=self
        )

    async def send_to_store(
        self,
        request: Request,
        target: str | StoreOutput,
        *,
        name: str | None = None,
        deferred: bool = False,
        expires_in: datetime.timedelta | float | None = None,
        timeout: Timeout | float | None = None,
        max_retries: int | None = None,
        wait_timeout: float | None = 600.0,
    ) -> StoreUploads:
        """Send ``request`` with signed upload URLs: xAI PUTs each image straight into
        ``target`` (``s3://bucket/prefix``, ``gs://...``, or a `StoreOutput`); the image bytes
        never pass through this client.

        Keys are ``{name}-{index}.jpg`` (``name``: the request's ``id``, else random); a
        taken key is refused before anything is billed. The URLs are signed for PUT without
        a Content-Type, valid for ``expires_in`` (default 15 minutes; 2 hours when
        ``deferred``, which then waits up to ``wait_timeout`` seconds for the images). After
        the answer the objects are confirmed (a HEAD each: size, etag); see `StoreUploads`.

        Raises:
            ValidationError: a bad field, ``response_format="b64_json"``, or ``expires_in``.
            StoreUnavailableError: the store cannot be written or signed for (Azure: refused,
                as SAS URLs cannot carry ``x-ms-blob-type``); nothing was sent.
            FileCollisionError: a key is taken; nothing was sent.
            APIStatusError, APIConnectionError, OutcomeUnknownError, DeferredError: as
                `generate` and `wait_deferred`.
        """
        plan = await plan_uploads(
            target, request, name=name, expires_in=expires_in, deferred=deferred
        )
        # The signed URLs live only in this copy of the request: events name the original.
        signed = attrs.evolve(request, output={"upload_urls": list(plan.urls)})
        if deferred:
            call: SendOptions = {"timeout": timeout, "max_retries": max_retries, "origin": request}
            path, _body, answer = await self._post(signed, call, deferred=True)
            response = await self.wait_deferred(_deferred_id(answer, path), timeout=wait_timeout)
        else:
            call = {"timeout": timeout, "max_retries": max_retries, "origin": request}
            path, body, answer = await self._post(signed, call, deferred=False)
            response = parse_images_response(
                answer.body,
                answer.payloads,
                request_id=answer.request_id,
                requested=_requested(body),
                transfers=None,
                where=f"POST {path}",
            )
        return await collect_uploads(plan, response)

    async def _post(
        self, request: Request, options: SendOptions, *, deferred: bool
    ) -> tuple[str, dict[str, Any], Any]:
        """Check, build and send the body; return the path, the body and the raw answer."""
        _check_keywords(options, SendOptions)
        timeout, max_retries = options.get("timeout"), options.get("max_retries")
        origin = options.get("origin")
        if isinstance(request, EditRequest):
            # Every other field is checked before (possibly large) local files are read.
            request.check_body(deferred=deferred)
            _check_call_options(timeout, max_retries)
            inputs = [await resolve_image(value, name) for name, value in request.named_inputs()]
            path, body = "/images/edits", request.to_body(inputs, deferred=deferred)
        elif isinstance(request, GenerateRequest):
            body = request.to_body(deferred=deferred)
            _check_call_options(timeout, max_retries)
            path = "/images/generations"
        else:
            raise ValidationError("request", request, "a GenerateRequest or an EditRequest")
        answer = await self._requester.send(
            "POST",
            path,
            body=body,
            timeout=timeout,
            max_retries=max_retries,
            origin=request if origin is None else origin,
        )
        return path, body, answer

    async def get_deferred(
        self,
        request_id: str,
        *,
        timeout: Timeout | float | None = None,
        max_retries: int | None = None,
    ) -> DeferredStatus:
        """Poll a deferred request once (``GET /images/{request_id}``).

        Returns the status: ``"pending"`` (the API answered 202, with any body or none, or a
        still-running status
        such as ``queued``, ``processing``, ``running``, ``in_progress``; the value as sent is
        in ``raw_status``), ``"done"`` with the response (the images may be at the top level or
        under ``response``), ``"failed"`` with the server's error, ``"expired"`` (404: unknown
        or expired id), or any other status the server sends, lower-cased (e.g.
        ``"cancelled"``). Polls are retried on timeouts and dropped connections too: a GET
        costs nothing.

        Raises:
            ValidationError: ``request_id`` is empty, or a bad ``timeout``/``max_retries``.
            APIStatusError, APIConnectionError, OutcomeUnknownError: the poll itself failed.
            APIResponseError: a 200 answer that is not a status object (``null``, an array, a
                string), or one that says ``done`` (or nothing) but carries no images.
        """
        path = "/images/" + segment(request_id, "request_id")
        _check_call_options(timeout, max_retries)
        try:
            answer = await self._requester.send(
                "GET", path, timeout=timeout, max_retries=max_retries, idempotent=True
            )
        except NotFoundError as exc:
            return DeferredStatus(
                "expired", error=exc.message, request_id=request_id, x_request_id=exc.request_id
            )
        with answer.reading():
            return self._read_deferred(answer, request_id, path)

    def _read_deferred(self, answer: Answer, asked: str, path: str) -> DeferredStatus:
        """The `DeferredStatus` an answer to a poll says (see `get_deferred`)."""
        body = answer.body
        if answer.status == 202:
            # Accepted: still running, whatever the body (none, text, or a JSON status).
            body = body if isinstance(body, Mapping) else {}
            return DeferredStatus(
                "pending",
                raw_status=_text(body.get("status")),
                request_id=_text(body.get("request_id")) or asked,
                x_request_id=answer.request_id,
            )
        if not isinstance(body, Mapping):
            shown = "null" if body is None else type(body).__name__
            raise answer.invalid(
                "GET", path, f"the answer to GET {path} is {shown}, not a deferred status object"
            )
        # Two ids: the deferred request's own (the body's, else the one polled) and the poll
        # answer's x-request-id.
        status_of = functools.partial(
            DeferredStatus,
            request_id=_text(body.get("request_id")) or asked,
            x_request_id=answer.request_id,
        )
        raw_status = _text(body.get("status"))
        status = (raw_status.strip().lower() or None) if raw_status is not None else None
        if status in _PENDING:
            return status_of("pending", raw_status=raw_status)
        if status in ("failed", "error", "expired"):
            message = _message_of(body.get("error")) or "failed"
            return status_of(status, error=message, raw_status=raw_status)
        nested = body.get("response")
        source = nested if isinstance(nested, Mapping) and "data" in nested else body
        if "data" not in source:
            if status is None or status == "done":
                what = "says done" if status else "has no status"
                raise answer.invalid(
                    "GET",
                    path,
                    f"the answer to GET {path} {what} but has no images (no data field)",
                )
            # A status this SDK does not know (e.g. "cancelled"): passed on; wait() fails on it.
            unknown_error = _message_of(body.get("error"))
            return status_of(status, error=unknown_error, raw_status=raw_status)
        response = parse_images_response(
            source,
            answer.payloads,
            request_id=_text(body.get("request_id")) or asked,
            transfers=self._requester.transfers,
            where=f"GET {path}",
        )
        return status_of("done", response=response, raw_status=raw_status)

    async def wait_deferred(
        self,
        request_id: str,
        *,
        timeout: float | None = 600.0,
        poll_interval: float = 1.0,
        max_poll_interval: float = 10.0,
    ) -> ImagesResponse:
        """Poll a deferred request until it is done; return its images.

        The wait between polls starts at ``poll_interval`` and grows by half each time up to
        ``max_poll_interval``. ``timeout`` is the overall deadline in seconds (``None``: none).

        Raises:
            DeferredError: the request failed (``status="failed"``), expired or is unknown
                (``"expired"``), ended with any other status that is not ``pending`` or
                ``done`` (e.g. ``"cancelled"``, raised at once), or was still pending at the
                deadline (``"pending"``).
            APIResponseError: the answer says ``done`` but carries no images.
            ValidationError: a bad ``request_id``, ``timeout`` or interval.
        """
        if timeout is not None and not positive_number(timeout):
            raise ValidationError("timeout", timeout, "a positive number of seconds or None")
        if (
            not positive_number(poll_interval)
            or not positive_number(max_poll_interval)
            or not max_poll_interval >= poll_interval
        ):
            raise ValidationError(
                "poll_interval",
                (poll_interval, max_poll_interval),
                "positive, and at most max_poll_interval",
            )
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        interval = poll_interval
        while True:
            state = await self.get_deferred(request_id)
            if state.status == "done" and state.response is not None:
                return state.response
            if state.status != "pending":
                # failed, expired, or a status this SDK does not know (e.g. "cancelled"): the
                # request will not finish, so polling on would only wait for the deadline.
                detail = f": {state.error}" if state.error else ""
                raise DeferredError(
                    f"deferred request {request_id} {state.status}{detail}",
                    request_id=request_id,
                    status=state.status,
                )
            now = loop.time()
            if deadline is not None and now >= deadline:
                raise DeferredError(
                    f"deferred request {request_id} was still {state.status} after {timeout} s",
                    request_id=request_id,
                    status=state.status,
                )
            wait = interval if deadline is None else min(interval, deadline - now)
            await sleep(wait)
            interval = min(interval * 1.5, max_poll_interval)
