"""The exception hierarchy of xai-images.

Every error the SDK raises on purpose derives from `XAIImagesError`::

    XAIImagesError
    ├── ConfigurationError            no API key, bad base URL, client closed
    │   ├── ClientClosedError         used after aclose() (also a RuntimeError)
    │   ├── SharedLimitError          the shared rate limit's Redis is unreachable at start
    │   └── StoreUnavailableError     an object-store target cannot be used (extra missing,
    │                                 no credentials, no bucket, access denied)
    ├── ValidationError               bad input, caught before any request is sent (also ValueError)
    ├── APIError                      something went wrong talking to the API host
    │   ├── APIStatusError            the API answered with an error status
    │   │   ├── BadRequestError              400 (also a wrong API key)
    │   │   ├── AuthenticationError          401
    │   │   ├── PermissionDeniedError        403
    │   │   ├── NotFoundError                404
    │   │   ├── UnsupportedMediaTypeError    415
    │   │   ├── UnprocessableEntityError     422
    │   │   ├── RateLimitError               429
    │   │   └── InternalServerError          5xx
    │   ├── APIConnectionError        the request provably never reached the server
    │   │   └── APITimeoutError       connecting timed out (nothing was sent)
    │   ├── OutcomeUnknownError       sent, but the answer was lost: the image may be billed
    │   └── APIResponseError          the server answered 2xx with a body we cannot read
    ├── DeferredError                 a deferred request failed, expired or did not finish in time
    ├── BatchTimeoutError             batches.wait() timed out (also a TimeoutError)
    ├── ImageBlockedError             the image was withheld by moderation
    └── DownloadError                 fetching or decoding an image failed
        ├── ImageExpiredError         the image URL answered 403/404: it expired
        ├── DownloadStalledError      no progress for too long, after retries
        ├── IntegrityError            truncated body or bytes that are not an image
        └── SaveError                 the file could not be written (disk full, permissions,
            ├── FileCollisionError    a file already exists under that name)
            └── StoreError            an object store refused or lost a write
                └── UploadFailedError xAI could not PUT the image to its signed URL (billed)

Transport exceptions from aiohttp and asyncio are wrapped and chained (``__cause__``); they never
reach callers. Programming errors (``TypeError``, ``AttributeError``, ...) are not wrapped.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from multidict import CIMultiDict

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "BatchTimeoutError",
    "ClientClosedError",
    "ConfigurationError",
    "DeferredError",
    "DownloadError",
    "DownloadStalledError",
    "FileCollisionError",
    "ImageBlockedError",
    "ImageExpiredError",
    "IntegrityError",
    "InternalServerError",
    "NotFoundError",
    "OutcomeUnknownError",
    "PermissionDeniedError",
    "RateLimitError",
    "SaveError",
    "SharedLimitError",
    "StoreError",
    "StoreUnavailableError",
    "UnprocessableEntityError",
    "UnsupportedMediaTypeError",
    "UploadFailedError",
    "ValidationError",
    "XAIImagesError",
]


class XAIImagesError(Exception):
    """Root of every error raised by xai-images."""


class ConfigurationError(XAIImagesError):
    """The client is misconfigured (no API key, a bad constructor argument such as the base URL
    or ``rate_limit``) or used after ``aclose()``."""


class ClientClosedError(ConfigurationError, RuntimeError):
    """The client was used after ``aclose()`` (or after its ``async with`` block ended)."""


class SharedLimitError(ConfigurationError):
    """The Redis server of ``shared_limit`` could not be reached when the client started (no
    request was sent). During a run, requests wait for Redis to come back instead."""


class StoreUnavailableError(ConfigurationError):
    """An object-store target cannot be used: the ``storage`` extra is not installed, there are
    no credentials, the bucket does not exist or access is denied. Raised before anything is
    billed. The message names the target and never holds a credential or a signed URL.

    Attributes:
        target: the target URL (``s3://bucket/prefix``), without credentials or query.
    """

    def __init__(self, message: str, *, target: str) -> None:
        self.target = target
        super().__init__(message)


class ValidationError(XAIImagesError, ValueError):
    """An argument is invalid; raised before any request is sent.

    Attributes:
        field: the request field at fault, e.g. ``"n"`` or ``"images[2]"``.
        value: the offending value (shortened when long; never a secret).
        limit: the rule that was broken, in words, e.g. ``"between 1 and 10"``.
    """

    def __init__(self, field: str, value: object, limit: str) -> None:
        self.field = field
        self.value = value
        self.limit = limit
        try:
            shown = repr(value)
        except (ValueError, RecursionError):  # an int too long to print, a structure too deep
            shown = f"<{type(value).__name__}>"
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(f"{field}: {shown} is invalid: must be {limit}")


class APIError(XAIImagesError):
    """Talking to the API host failed.

    Attributes:
        method: HTTP method of the request, e.g. ``"POST"``.
        path: URL path of the request, e.g. ``"/v1/images/generations"``.
    """

    def __init__(self, message: str, *, method: str | None = None, path: str | None = None):
        self.message = message
        self.method = method
        self.path = path
        super().__init__(message)


class APIStatusError(APIError):
    """The API answered with an error status.

    Attributes:
        status_code: the HTTP status.
        message: the server's message, from any error-body form.
        code: the server's error code as text (``"team-blocked"``, ``"invalid_argument"``, a
            number as text), when it sent one.
        type: the error's ``type`` (``"invalid_request_error"``, ...), when the body has one.
        param: the request field the error is about, when the body names one.
        request_id: the ``x-request-id`` of the answer, for support tickets.
        headers: the response headers.
        body: the decoded error body (``dict``), or its text.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        request_id: str | None = None,
        code: str | None = None,
        type: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        self.status_code = status_code
        self.request_id = request_id
        self.code = code
        self.type = type
        self.param = param
        # Case-insensitive, like HTTP header names: headers["retry-after"] always works.
        self.headers: Mapping[str, str] = CIMultiDict(headers or {})
        self.body = body
        super().__init__(message, method=method, path=path)

    def __str__(self) -> str:
        where = f" {self.method} {self.path}" if self.method and self.path else ""
        rid = f" (request id {self.request_id})" if self.request_id else ""
        hint = self._hint()
        return f"{self.status_code}{where}: {self.message}{rid}{hint}"

    def _hint(self) -> str:
        return ""


class BadRequestError(APIStatusError):
    """400: an argument was rejected, or the API key is wrong (xAI answers 400 for both)."""

    def _hint(self) -> str:
        return ". Note: xAI also answers 400 when the API key is wrong; check XAI_API_KEY."


class AuthenticationError(APIStatusError):
    """401: the Authorization header is missing or malformed."""

    def _hint(self) -> str:
        return ". Set XAI_API_KEY or pass api_key= to the client."


class PermissionDeniedError(APIStatusError):
    """403: the key or team lacks permission, or is blocked."""


class NotFoundError(APIStatusError):
    """404: unknown model, path, or (for deferred requests) an unknown or expired request id."""


class UnsupportedMediaTypeError(APIStatusError):
    """415: the body was not JSON. The SDK always sends JSON, so this points at a proxy."""


class UnprocessableEntityError(APIStatusError):
    """422: a field is missing, of the wrong type, or unknown to the API (check the extra fields
    you sent as given)."""


class RateLimitError(APIStatusError):
    """429: rate limited, and retries ran out or the server asked to wait too long.

    Attributes:
        retry_after: seconds the server asked to wait, when it said (``Retry-After`` or
            ``retry-after-ms``), else ``None``.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)

    def _hint(self) -> str:
        if self.retry_after is not None:
            return f". Retry after {self.retry_after:.1f} s"
        return ""


class InternalServerError(APIStatusError):
    """5xx: the server failed. Retried automatically; raised when retries ran out."""


class APIConnectionError(APIError):
    """The request provably never reached the server (refused, DNS, reset before sending).

    Safe to retry: nothing was generated or billed.
    """


class APITimeoutError(APIConnectionError):
    """Connecting to the API host timed out; nothing was sent."""


class OutcomeUnknownError(APIError):
    """The request was sent but its answer was lost (timeout, dropped connection).

    The server may have generated, and billed, the images. Not retried automatically: retrying
    could pay twice. Opt in with ``RetryPolicy(retry_unknown_outcome=True)``.

    Attributes:
        reason: why the answer is missing: ``"timeout"`` (no answer in time) or
            ``"disconnected"`` (the connection dropped) for a request of this call; in a bulk
            job's outcomes also ``"cancelled"`` (the job was interrupted after sending) or
            ``"earlier"`` (an earlier run recorded it unknown; not resent).
    """

    def __init__(
        self, message: str, *, reason: str, method: str | None = None, path: str | None = None
    ) -> None:
        self.reason = reason
        super().__init__(message, method=method, path=path)


class APIResponseError(APIError):
    """The server answered 2xx but the body could not be read as the documented JSON.

    Attributes:
        request_id: the ``x-request-id`` of that answer, for support tickets (``None`` when the
            server sent none).
    """

    def __init__(
        self,
        message: str,
        *,
        method: str | None = None,
        path: str | None = None,
        request_id: str | None = None,
    ) -> None:
        self.request_id = request_id
        super().__init__(message, method=method, path=path)

    def __str__(self) -> str:
        rid = f" (request id {self.request_id})" if self.request_id else ""
        return f"{self.message}{rid}"


class DeferredError(XAIImagesError):
    """A deferred request failed on the server, expired, or did not finish before the deadline.

    Attributes:
        request_id: the deferred request's id.
        status: the last status seen (``"failed"``, ``"expired"``, ``"pending"`` at the
            deadline, or another final status the server sent, such as ``"cancelled"``).
    """

    def __init__(self, message: str, *, request_id: str, status: str) -> None:
        self.request_id = request_id
        self.status = status
        super().__init__(message)


class BatchTimeoutError(XAIImagesError, TimeoutError):
    """``batches.wait`` gave up: the batch was still running at its ``timeout``.

    The batch keeps running on the server; wait again, or read the results so far.

    Attributes:
        batch: the last `Batch` seen (its counters say how far it got).
        timeout: the seconds waited.
    """

    def __init__(self, message: str, *, batch: Any, timeout: float) -> None:
        self.batch = batch
        self.timeout = timeout
        super().__init__(message)


class ImageBlockedError(XAIImagesError):
    """The image was withheld by moderation: the answer had neither ``url`` nor ``b64_json``."""


class DownloadError(XAIImagesError):
    """Fetching, decoding or writing an image failed.

    Attributes:
        url: the image URL (image URLs carry no credentials), or ``None`` for base64 images.
    """

    def __init__(self, message: str, *, url: str | None = None) -> None:
        self.url = url
        super().__init__(message)


class ImageExpiredError(DownloadError):
    """The image URL answered 403 or 404: temporary image URLs expire, download promptly."""


class DownloadStalledError(DownloadError):
    """No progress for too long (or slower than the minimum speed), after retries."""


class IntegrityError(DownloadError):
    """The body was truncated (fewer bytes than Content-Length) or is not a PNG, JPEG or WebP."""


class SaveError(DownloadError):
    """The file could not be written: disk full, permission denied, ...

    Attributes:
        path: the final path that was being written.
    """

    def __init__(self, message: str, *, path: Path, url: str | None = None) -> None:
        self.path = path
        super().__init__(message, url=url)


class FileCollisionError(SaveError):
    """A file already exists under the target name and the ``on_exists`` policy keeps it.

    Raised for ``"fail"`` (even when the existing file is identical; the message says which) and
    for ``"skip"`` when the existing file differs.
    """


class StoreError(SaveError):
    """An object store refused or lost a write (or a read while verifying); nothing is visible
    under the final key.

    Attributes:
        location: the object's URL (``s3://bucket/prefix/key``), without credentials or query.
        key: the object's key, relative to the target.
        path: the key, as a relative path.
    """

    def __init__(self, message: str, *, location: str, key: str, url: str | None = None) -> None:
        self.location = location
        self.key = key
        super().__init__(message, path=Path(key), url=url)


class UploadFailedError(StoreError):
    """xAI could not upload an image to the signed URL it was given (``output.upload_urls``):
    the image was billed but is not stored. The signed URL is never part of the error.

    Attributes:
        reason: what the API said about the failed upload, if anything.
    """

    def __init__(self, message: str, *, location: str, key: str, reason: str | None = None):
        self.reason = reason
        super().__init__(message, location=location, key=key)


_STATUS_TABLE: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    415: UnsupportedMediaTypeError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def status_error_class(status: int) -> type[APIStatusError]:
    """Return the exception class for an HTTP error status (the table, then 5xx, then generic)."""
    if status in _STATUS_TABLE:
        return _STATUS_TABLE[status]
    if status >= 500:
        return InternalServerError
    return APIStatusError
