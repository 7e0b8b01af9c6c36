"""Typed models of xAI's Batch and Files APIs, parsed leniently at the edge.

The sources disagree on several shapes (``BATCH-API.md`` lists them), so parsing accepts every
documented form: timestamps as RFC 3339 strings, bare ``YYYY-MM-DD`` dates or epoch numbers;
``expire_time`` or ``expires_at``; a result's images under ``image_generation``, ``image_edit`` or
any single key of ``response``; per-request errors as a string, a ``{code, message}`` status, or
a top-level ``error``/``error_message``. Server values are ``str`` and unknown keys are ignored.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import attrs

from .._errors import APIResponseError
from ._convert import structure
from ._models import ImagesResponse, parse_images_response

if TYPE_CHECKING:
    from .._results._transfers import Transfers

__all__ = [
    "Batch",
    "BatchRequestState",
    "BatchResult",
    "BatchState",
    "FileObject",
    "ResultsPage",
    "parse_batch",
    "parse_file",
    "parse_request_state",
    "parse_result",
]

ResultStatus = Literal["succeeded", "failed", "blocked"]
_CANCELLED_CODE = 1


@attrs.frozen
class BatchState:
    """The request counters of a batch (there is no status field: see :attr:`Batch.done`)."""

    num_requests: int = 0
    num_pending: int = 0
    num_success: int = 0
    num_error: int = 0
    num_cancelled: int = 0


@attrs.frozen
class Batch:
    """A batch as the API describes it.

    Attributes:
        batch_id: ``batch_<uuid>``.
        name: the name given at creation (bulk jobs use their run id).
        create_time, expire_time, cancel_time: UTC times, when the server sent them. After
            ``expire_time`` the results are gone.
        cancel_by_xai_message: set when xAI cancelled the batch itself (a bad JSONL line, a
            model not supported for batch processing): the reason, in xAI's words.
        input_file_id: the JSONL file it was created from (such batches take no adds).
        state: the counters.
    """

    batch_id: str
    name: str | None = None
    create_time: datetime.datetime | None = None
    expire_time: datetime.datetime | None = None
    cancel_time: datetime.datetime | None = None
    cancel_by_xai_message: str | None = None
    create_api_key_id: str | None = None
    input_file_id: str | None = None
    state: BatchState = BatchState()
    request_id: str | None = attrs.field(default=None, eq=False)
    """The ``x-request-id`` of the answer this came from (for support tickets)."""

    @property
    def cancelled(self) -> bool:
        """Cancelled by the caller or by xAI."""
        return self.cancel_time is not None or self.cancel_by_xai_message is not None

    @property
    def done(self) -> bool:
        """Nothing is left to process: cancelled, or requests added and none pending.

        A batch created from a file shows ``num_requests == 0`` while its file is validated,
        so an empty batch is not done.
        """
        state = self.state
        return self.cancelled or (state.num_requests > 0 and state.num_pending == 0)

    def expired(self, now: datetime.datetime | None = None) -> bool:
        """Whether ``expire_time`` has passed (results no longer available)."""
        if self.expire_time is None:
            return False
        return (now or datetime.datetime.now(datetime.timezone.utc)) >= self.expire_time


@attrs.frozen
class BatchRequestState:
    """One request of a batch (``list_requests``).

    Attributes:
        batch_request_id: the id given when it was added (a bulk job's item id).
        state: ``pending``, ``succeeded``, ``failed``, ``cancelled`` or ``unknown`` (any other
            value the server sends is kept as is).
        endpoint, model: as the server reports them.
        create_time, finish_time: UTC times (``finish_time`` is ``None`` while pending).
    """

    batch_request_id: str
    state: str = "unknown"
    endpoint: str | None = None
    model: str | None = None
    create_time: datetime.datetime | None = None
    finish_time: datetime.datetime | None = None


@attrs.frozen
class BatchResult:
    """The result of one batch request.

    Attributes:
        batch_request_id: the request's id.
        status: ``succeeded`` (images in :attr:`response`), ``failed`` (see
            :attr:`error_code`, :attr:`error_message`) or ``blocked`` (moderation withheld every
            image; billed).
        response: the images, as a real-time call returns them; save them like any
            ``ImagesResponse``. Their URLs expire an hour after the request finished.
        error_code: the server's code (gRPC numbers: 1 cancelled, 3 invalid argument, 13
            internal), when it sent one.
        error_message: the server's message, for failures.
    """

    batch_request_id: str
    status: ResultStatus
    response: ImagesResponse | None = None
    error_code: int | str | None = None
    error_message: str | None = None

    @property
    def ok(self) -> bool:
        """``True`` for a success."""
        return self.status == "succeeded"

    @property
    def cancelled(self) -> bool:
        """A request cancelled before it ran (code 1)."""
        return self.status == "failed" and self.error_code == _CANCELLED_CODE


@attrs.frozen
class ResultsPage:
    """One page of results.

    Attributes:
        results: the results on this page, in the server's order (not the order added).
        next_page_token: pass to ``results(page_token=...)`` for the next page; ``None`` on
            the last page (the server said so with ``null``, ``""`` or no token).
        page_token: the token this page was read with (``None`` for the first).
    """

    results: tuple[BatchResult, ...]
    next_page_token: str | None
    page_token: str | None = None
    request_id: str | None = attrs.field(default=None, eq=False)
    """The ``x-request-id`` of the answer this page came from."""


@attrs.frozen
class FileObject:
    """An uploaded file (Files API).

    Attributes:
        id: ``file_<uuid>``.
        bytes: its size.
        filename: the name it was uploaded with.
        created_at, expires_at: UTC times (``expires_at`` is ``None`` for no expiry).
        purpose: the purpose given at upload, as the API stores it (often ``""``).
        object: the object type the API names (``"file"``).
    """

    id: str
    bytes: int = 0
    filename: str | None = None
    created_at: datetime.datetime | None = None
    expires_at: datetime.datetime | None = None
    purpose: str | None = None
    object: str | None = None
    request_id: str | None = attrs.field(default=None, eq=False)
    """The ``x-request-id`` of the answer this came from."""


# -- parsing --------------------------------------------------------------------------------------


_T = TypeVar("_T")


def _structure(
    data: Any,
    cls: type[_T],
    what: str,
    where: str,
    id_key: str,
    owner: str,
    request_id: str | None = None,
) -> _T:
    # ``owner`` names the object in the error when it lacks its ``id_key``.
    if isinstance(data, Mapping) and not data.get(id_key):
        raise APIResponseError(f"{where}: {owner} has no {id_key}", request_id=request_id)
    if not isinstance(data, Mapping):
        raise APIResponseError(
            f"{where}: {what} is a {type(data).__name__}, not an object", request_id=request_id
        )
    fields = dict(data)
    if "request_id" in attrs.fields_dict(cls):  # type: ignore[arg-type]
        # The answer's x-request-id, never a body field of the same name.
        fields["request_id"] = request_id
    try:
        return structure(fields, cls, where, what)
    except APIResponseError as exc:
        exc.request_id = request_id
        raise


def parse_batch(data: Any, where: str = "batch", *, request_id: str | None = None) -> Batch:
    """A :class:`Batch` from the API's JSON (``expires_at`` is read as ``expire_time``).

    Raises:
        APIResponseError: not an object, or no ``batch_id``.
    """
    if isinstance(data, Mapping) and "expire_time" not in data and "expires_at" in data:
        data = {**data, "expire_time": data["expires_at"]}
    if isinstance(data, Mapping) and not isinstance(data.get("state"), Mapping):
        data = {k: v for k, v in data.items() if k != "state"}
    return _structure(data, Batch, "batch", where, "batch_id", "the batch", request_id)


def parse_request_state(data: Any, where: str = "batch_request_metadata") -> BatchRequestState:
    """A :class:`BatchRequestState` from the API's JSON.

    Raises:
        APIResponseError: not an object, or no ``batch_request_id``.
    """
    return _structure(data, BatchRequestState, "request", where, "batch_request_id", "an entry")


def parse_file(data: Any, where: str = "file", *, request_id: str | None = None) -> FileObject:
    """A :class:`FileObject` from the API's JSON.

    Raises:
        APIResponseError: not an object, or no ``id``.
    """
    return _structure(data, FileObject, "file", where, "id", "the file", request_id)


def _error_of(entry: Mapping[str, Any]) -> tuple[int | str | None, str | None, bool]:
    """``(code, message, is_error)`` from any documented error shape of a result."""
    result = entry.get("batch_result")
    candidates: list[Any] = []
    if isinstance(result, Mapping):
        candidates.append(result.get("error"))
    candidates.append(entry.get("error"))
    code: int | str | None = None
    message: str | None = None
    failed = False
    for error in candidates:
        if isinstance(error, str) and error:
            message, failed = error, True
        elif isinstance(error, Mapping):
            raw_code = error.get("code")
            text = error.get("message")
            # A status with code 0 is the success marker some shapes carry.
            if (
                isinstance(raw_code, (int, str))
                and not isinstance(raw_code, bool)
                and raw_code not in (0, "0", "OK", "")
            ):
                code, failed = raw_code, True
            if isinstance(text, str) and text:
                message, failed = text, True
        if failed:
            break
    top = entry.get("error_message")
    if isinstance(top, str) and top:
        message = message or top
        failed = True
    return code, message, failed


def _response_body(result: Any) -> Any:
    """The one value under ``batch_result.response``, whatever its key."""
    if not isinstance(result, Mapping):
        return None
    response = result.get("response")
    if not isinstance(response, Mapping) or not response:
        return None
    for key in ("image_generation", "image_edit"):
        if key in response:
            return response[key]
    if len(response) == 1:
        return next(iter(response.values()))
    return None


def parse_result(
    entry: Any,
    payloads: Sequence[bytes | bytearray] = (),
    *,
    transfers: Transfers | None = None,
    where: str = "results",
) -> BatchResult:
    """A :class:`BatchResult` from one entry of ``/results`` (see the module docstring).

    Raises:
        APIResponseError: not an object, no ``batch_request_id``, or a success whose images
            are unreadable.
    """
    if not isinstance(entry, Mapping):
        raise APIResponseError(f"{where}: a result is a {type(entry).__name__}, not an object")
    request_id = entry.get("batch_request_id")
    if not isinstance(request_id, str) or not request_id:
        raise APIResponseError(f"{where}: a result has no batch_request_id")
    body = _response_body(entry.get("batch_result"))
    code, message, failed = _error_of(entry)
    if body is None or (failed and not isinstance(body, Mapping)):
        if not failed:
            message = "the result has neither a response nor an error"
        return BatchResult(request_id, "failed", error_code=code, error_message=message)
    response = parse_images_response(
        body,
        payloads,
        request_id=request_id,
        requested=None,
        transfers=transfers,
        where=f"{where}: {request_id}",
    )
    if not response.images:
        message = f"all {response.blocked_count or 'requested'} image(s) withheld by moderation"
        return BatchResult(request_id, "blocked", response, error_message=message)
    return BatchResult(request_id, "succeeded", response)
