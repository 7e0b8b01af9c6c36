"""``client.images``: generate, edit, and deferred requests (start, get, wait).

The request fields are described once, here:

- ``prompt``: what to draw or change, 1 to 10,000 characters.
- ``model``: any model name (new ones appear; not checked); the server's default when unset.
- ``n``: images to make, 1 to 10.
- ``quality``: ``low``, ``medium``, ``high`` or ``auto``.
- ``response_format``: ``url`` (temporary URLs; the API default) or ``b64_json`` (image bytes
  in the answer, decoded as they stream in).
- ``aspect_ratio``: ``1:1``, ``16:9``, ... (see ``ASPECT_RATIOS``); for edits only when
  combining several images.
- ``resolution``: ``1k``, ``1.5k`` or ``2k``.
- ``user``: an end-user id for abuse monitoring.
- ``extra_body``: extra fields sent as given, merged last (a key that collides with a named
  argument wins); for fields this SDK does not know yet.
- ``timeout``: a ``Timeout`` or seconds for ``Timeout.request``, for this call only.
- ``max_retries``: retries for this call only.
- ``deferred``: start the request and return a :class:`DeferredRequest` at once (URL format only).

Only the fields a caller set are sent.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, overload
from urllib.parse import quote

from ._config import Timeout
from ._errors import APIResponseError, DeferredError, NotFoundError, ValidationError
from ._inputs import ImageInput, resolve_image, resolve_images
from ._models import DeferredRequest, DeferredStatus, ImagesResponse, parse_images_response
from ._retry import sleep
from ._validation import PENDING_INPUT, check_edit_inputs, edit_body, generate_body

if TYPE_CHECKING:
    from ._client import AsyncClient

__all__ = ["Images"]

# Statuses of a deferred request that is still running, reported as "pending".
_PENDING = frozenset({"pending", "queued", "processing", "running", "in_progress"})


def _requested(body: Mapping[str, Any]) -> int:
    n = body.get("n", 1)
    return n if isinstance(n, int) and not isinstance(n, bool) else 1


def _finite_positive(value: object) -> bool:
    """A finite real number above 0 (``bool``, NaN and infinity are not)."""
    return (
        not isinstance(value, bool)
        and isinstance(value, (int, float))
        and math.isfinite(value)
        and value > 0
    )


def _check_call_options(timeout: object, max_retries: object) -> None:
    """Check the per-call ``timeout`` and ``max_retries`` before anything is read or sent.

    Raises:
        ValidationError: either is of the wrong type or out of range.
    """
    if timeout is not None and not isinstance(timeout, Timeout) and not _finite_positive(timeout):
        raise ValidationError("timeout", timeout, "a positive number of seconds, a Timeout or None")
    if max_retries is not None and (
        isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0
    ):
        raise ValidationError("max_retries", max_retries, "an int >= 0 or None")


def _message_of(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        message = value.get("message") or value.get("error")
        return str(message) if message else str(dict(value))
    return str(value)


class Images:
    """The image endpoints of a client (``client.images``). Field meanings: module docstring."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    def __repr__(self) -> str:
        return f"<Images of {self._client!r}>"

    @overload
    async def generate(
        self,
        prompt: str,
        *,
        model: str | None = ...,
        n: int | None = ...,
        quality: str | None = ...,
        response_format: str | None = ...,
        aspect_ratio: str | None = ...,
        resolution: str | None = ...,
        user: str | None = ...,
        extra_body: Mapping[str, Any] | None = ...,
        timeout: Timeout | float | None = ...,
        max_retries: int | None = ...,
        deferred: Literal[False] = ...,
    ) -> ImagesResponse: ...

    @overload
    async def generate(
        self,
        prompt: str,
        *,
        model: str | None = ...,
        n: int | None = ...,
        quality: str | None = ...,
        response_format: str | None = ...,
        aspect_ratio: str | None = ...,
        resolution: str | None = ...,
        user: str | None = ...,
        extra_body: Mapping[str, Any] | None = ...,
        timeout: Timeout | float | None = ...,
        max_retries: int | None = ...,
        deferred: Literal[True],
    ) -> DeferredRequest: ...

    async def generate(
        self,
        prompt: str,
        *,
        model: str | None = None,
        n: int | None = None,
        quality: str | None = None,
        response_format: str | None = None,
        aspect_ratio: str | None = None,
        resolution: str | None = None,
        user: str | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: Timeout | float | None = None,
        max_retries: int | None = None,
        deferred: bool = False,
    ) -> ImagesResponse | DeferredRequest:
        """Generate images from a text prompt (``POST /images/generations``).

        Returns an :class:`ImagesResponse`, or a :class:`DeferredRequest` with ``deferred=True``.

        Raises:
            ValidationError: an argument breaks a documented limit (``timeout`` and
                ``max_retries`` included); nothing was sent.
            APIStatusError: the API answered with an error (a subclass per status).
            APIConnectionError: the API could not be reached (after retries).
            OutcomeUnknownError: the request was sent but the answer was lost: the images may
                have been generated and billed; not retried unless you opted in.
        """
        body = generate_body(
            prompt,
            model=model,
            n=n,
            quality=quality,
            response_format=response_format,
            aspect_ratio=aspect_ratio,
            resolution=resolution,
            user=user,
            deferred=deferred,
            extra_body=extra_body,
        )
        _check_call_options(timeout, max_retries)
        return await self._send("/images/generations", body, timeout, max_retries, deferred)

    @overload
    async def edit(
        self,
        prompt: str,
        *,
        image: ImageInput | None = ...,
        images: Sequence[ImageInput] | None = ...,
        model: str | None = ...,
        n: int | None = ...,
        quality: str | None = ...,
        response_format: str | None = ...,
        aspect_ratio: str | None = ...,
        resolution: str | None = ...,
        user: str | None = ...,
        extra_body: Mapping[str, Any] | None = ...,
        timeout: Timeout | float | None = ...,
        max_retries: int | None = ...,
        deferred: Literal[False] = ...,
    ) -> ImagesResponse: ...

    @overload
    async def edit(
        self,
        prompt: str,
        *,
        image: ImageInput | None = ...,
        images: Sequence[ImageInput] | None = ...,
        model: str | None = ...,
        n: int | None = ...,
        quality: str | None = ...,
        response_format: str | None = ...,
        aspect_ratio: str | None = ...,
        resolution: str | None = ...,
        user: str | None = ...,
        extra_body: Mapping[str, Any] | None = ...,
        timeout: Timeout | float | None = ...,
        max_retries: int | None = ...,
        deferred: Literal[True],
    ) -> DeferredRequest: ...

    async def edit(
        self,
        prompt: str,
        *,
        image: ImageInput | None = None,
        images: Sequence[ImageInput] | None = None,
        model: str | None = None,
        n: int | None = None,
        quality: str | None = None,
        response_format: str | None = None,
        aspect_ratio: str | None = None,
        resolution: str | None = None,
        user: str | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: Timeout | float | None = None,
        max_retries: int | None = None,
        deferred: bool = False,
    ) -> ImagesResponse | DeferredRequest:
        """Edit one image (``image=``) or combine up to 5 (``images=``) (``POST /images/edits``).

        Each input is a URL, a data URI, a local path (``str`` or ``PathLike``), ``bytes``, a
        binary file object or a :class:`FileId`. Local inputs are sent as data URIs typed from
        their bytes (JPEG, PNG or WebP, at most 10 MiB each), in a JSON body. Refer to several
        inputs in the prompt as ``<IMAGE_0>``, ``<IMAGE_1>``, ...

        Raises:
            ValidationError: both or neither of ``image``/``images``, more than 5 images, an
                input that is missing, too big or not an image, or another bad argument;
                nothing was sent.
            APIStatusError, APIConnectionError, OutcomeUnknownError: as :meth:`generate`.
        """
        options: dict[str, Any] = {
            "model": model,
            "n": n,
            "quality": quality,
            "response_format": response_format,
            "aspect_ratio": aspect_ratio,
            "resolution": resolution,
            "user": user,
            "deferred": deferred,
            "extra_body": extra_body,
        }
        check_edit_inputs(image, images)
        _check_call_options(timeout, max_retries)
        # Check every other field before reading (possibly large) local files.
        if images is not None:
            edit_body(prompt, images=[PENDING_INPUT] * len(images), **options)
            body = edit_body(prompt, images=await resolve_images(list(images)), **options)
        else:
            assert image is not None  # check_edit_inputs guarantees it
            edit_body(prompt, image=PENDING_INPUT, **options)
            body = edit_body(prompt, image=await resolve_image(image), **options)
        return await self._send("/images/edits", body, timeout, max_retries, deferred)

    async def _send(
        self,
        path: str,
        body: dict[str, Any],
        timeout: Timeout | float | None,
        max_retries: int | None,
        deferred: bool,
    ) -> ImagesResponse | DeferredRequest:
        client = self._client
        answer = await client._request(
            "POST", path, body=body, timeout=timeout, max_retries=max_retries
        )
        if deferred:
            request_id = answer.body.get("request_id") if isinstance(answer.body, Mapping) else None
            if not isinstance(request_id, str) or not request_id:
                raise APIResponseError(
                    f"the answer to a deferred POST {path} has no request_id",
                    method="POST",
                    path=path,
                )
            return DeferredRequest(request_id, client=client)
        return parse_images_response(
            answer.body,
            answer.payloads,
            request_id=answer.request_id,
            requested=_requested(body),
            client=client,
            where=f"POST {path}",
        )

    async def get_deferred(
        self,
        request_id: str,
        *,
        timeout: Timeout | float | None = None,
        max_retries: int | None = None,
    ) -> DeferredStatus:
        """Poll a deferred request once (``GET /images/{request_id}``).

        Returns the status: ``"pending"`` (the API answered 202, or a still-running status
        such as ``queued``, ``processing``, ``running``, ``in_progress``; the value as sent is
        in ``raw_status``), ``"done"`` with the response (the images may be at the top level or
        under ``response``), ``"failed"`` with the server's error, ``"expired"`` (404: unknown
        or expired id), or any other status the server sends, lower-cased (e.g.
        ``"cancelled"``). Polls are retried on timeouts and dropped connections too: a GET
        costs nothing.

        Raises:
            ValidationError: ``request_id`` is empty, or a bad ``timeout``/``max_retries``.
            APIStatusError, APIConnectionError, OutcomeUnknownError: the poll itself failed.
            APIResponseError: the answer says ``done`` but carries no images.
        """
        if not isinstance(request_id, str) or not request_id.strip():
            raise ValidationError("request_id", request_id, "a non-empty string")
        _check_call_options(timeout, max_retries)
        path = "/images/" + quote(request_id, safe="")
        try:
            answer = await self._client._request(
                "GET", path, timeout=timeout, max_retries=max_retries, idempotent=True
            )
        except NotFoundError as exc:
            return DeferredStatus("expired", error=exc.message)
        body = answer.body if isinstance(answer.body, Mapping) else {}
        raw = body.get("status")
        raw_status = str(raw) if raw is not None else None
        status = (raw_status.strip().lower() or None) if raw_status is not None else None
        if answer.status == 202 or status in _PENDING:
            return DeferredStatus("pending", raw_status=raw_status)
        if status in ("failed", "error", "expired"):
            message = _message_of(body.get("error")) or "failed"
            return DeferredStatus(status, error=message, raw_status=raw_status)
        nested = body.get("response")
        source = nested if isinstance(nested, Mapping) and "data" in nested else body
        if "data" not in source:
            if status is None:
                return DeferredStatus("pending")
            if status == "done":
                raise APIResponseError(
                    f"the answer to GET {path} says done but has no images (no data field)",
                    method="GET",
                    path=path,
                )
            # A status this SDK does not know (e.g. "cancelled"): passed on; wait() fails on it.
            unknown_error = _message_of(body.get("error"))
            return DeferredStatus(status, error=unknown_error, raw_status=raw_status)
        response = parse_images_response(
            source,
            answer.payloads,
            request_id=request_id,
            client=self._client,
            where=f"GET {path}",
        )
        return DeferredStatus("done", response=response, raw_status=raw_status)

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
        if timeout is not None and not _finite_positive(timeout):
            raise ValidationError("timeout", timeout, "a positive number of seconds or None")
        if (
            not _finite_positive(poll_interval)
            or not _finite_positive(max_poll_interval)
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
