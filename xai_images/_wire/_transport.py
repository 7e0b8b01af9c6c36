"""One API request attempt: send it, read the answer, map every failure onto ``_errors.py``.

The transport knows nothing of retries, limits or hooks (``_api/_requester.py`` above it
decides those); it only tells a retry-safe failure (nothing reached the server:
``APIConnectionError``) from one that may have been processed (``OutcomeUnknownError``), which
is what the never-pay-twice rule needs. The API key is held by `Secret`, goes only into the
``Authorization`` header of each API request, and is redacted from every message built from
server text.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from types import SimpleNamespace
from typing import Any, NamedTuple

import aiohttp
import attrs
from multidict import CIMultiDict
from yarl import URL

from .._config import DEFAULT_MAX_ANSWER_BYTES, Timeout, connect_hint, not_found_hint
from .._errors import (
    APIConnectionError,
    APIError,
    APIResponseError,
    APIStatusError,
    APITimeoutError,
    ConfigurationError,
    NotFoundError,
    OutcomeUnknownError,
    RateLimitError,
    status_error_class,
)
from .._version import __version__
from . import _jsonslice as jsonslice
from ._b64stream import B64ResponseScanner
from ._gate import ANSWER_MIN_SPEND, budgets
from ._retry import parse_retry_after

__all__ = [
    "Answer",
    "Consume",
    "ErrorFields",
    "Secret",
    "Transport",
    "dumps",
    "error_fields",
    "trace_config",
]


_logger = logging.getLogger("xai_images")
_READ_CHUNK = 256 * 1024
_NO_BODY_TYPE = ("Content-Type",)
_MAX_ERROR_BODY = 64 * 1024
# Request bodies above this (edit data URIs) are encoded off the event loop.
_LARGE_JSON = 512 * 1024


Consume = Callable[[aiohttp.ClientResponse], Awaitable[Any]]
"""Reads a binary 2xx answer (see `Transport.send`)."""


class Secret:
    """Holds the API key so that no repr, traceback local dump or log can show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def redact(self, text: str) -> str:
        return text.replace(self._value, "***") if self._value else text

    def redact_bytes(self, data: bytes) -> bytes:
        if not self._value:
            return data
        needle = self._value.encode("latin-1")
        return data.replace(needle, b"***") if needle in data else data

    def redact_optional(self, text: str | None) -> str | None:
        return None if text is None else self.redact(text)

    def redact_headers(self, headers: Mapping[str, str]) -> CIMultiDict[str]:
        """A copy of response ``headers`` fit to keep in an error: credential headers a server
        echoes are dropped, and the key is masked in every other value."""
        out: CIMultiDict[str] = CIMultiDict()
        for name, value in headers.items():
            if name.lower() in _CREDENTIAL_HEADERS:
                continue
            out.add(name, self.redact(value))
        return out

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__


# Headers that carry credentials: never kept from an answer, whatever their value.
_CREDENTIAL_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "set-cookie2", "x-api-key"}
)


class _SendState:
    """Per-attempt flag set by a trace hook once the request headers went out."""

    __slots__ = ("headers_sent",)

    def __init__(self) -> None:
        self.headers_sent = False


async def _on_headers_sent(
    _session: aiohttp.ClientSession, ctx: SimpleNamespace, _params: object
) -> None:
    state = ctx.trace_request_ctx
    if isinstance(state, _SendState):
        state.headers_sent = True


def trace_config() -> aiohttp.TraceConfig:
    """The trace hooks a session needs for the transport to know whether a request went out."""
    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(_on_headers_sent)
    return trace


@attrs.frozen
class Answer:
    """A 2xx answer: the JSON body (base64 payloads replaced by placeholders) and the payloads."""

    status: int
    headers: Mapping[str, str]
    request_id: str | None
    body: Any
    payloads: list[bytes]

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Give an `APIResponseError` raised while this answer is read its ``request_id``."""
        try:
            yield
        except APIResponseError as exc:
            if exc.request_id is None:
                exc.request_id = self.request_id
            raise

    def invalid(self, method: str, path: str, message: str) -> APIResponseError:
        """The `APIResponseError` for this answer to ``method path``, with its request id."""
        return APIResponseError(message, method=method, path=path, request_id=self.request_id)


class ErrorFields(NamedTuple):
    """What an error body says, from any of the forms the API uses (each ``None`` when absent).

    The forms: ``{"error": {"message", "type", "code", "param"}}`` (OpenAI style),
    ``{"code": ..., "error": "message"}`` (xAI), a flat ``{"message" or "detail", "code",
    "type", "param"}``, or plain text. A numeric ``code`` is given as text.
    """

    message: str | None
    code: str | None
    type: str | None
    param: str | None


def _text_of(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    text = str(value)
    return text or None


def error_fields(body: Any, text: str) -> ErrorFields:
    """The server's message, code, type and param from any error-body form."""
    if isinstance(body, Mapping):
        error = body.get("error")
        # The details sit under "error" (OpenAI style) or beside it (xAI, flat forms).
        details: Mapping[str, Any] = error if isinstance(error, Mapping) else body
        message = details.get("message")
        if not isinstance(message, str) or not message:
            message = error if isinstance(error, str) and error else details.get("detail")
        code = _text_of(details.get("code"))
        if code is None and details is not body:
            code = _text_of(body.get("code"))
        kind, param = _text_of(details.get("type")), _text_of(details.get("param"))
        if message or code or kind:
            shown = str(message) if message and isinstance(message, (str, int, float)) else None
            return ErrorFields(shown, code, kind, param)
    text = text.strip()
    return ErrorFields(text[:500] or None, None, None, None)


class Transport:
    """Sends single API request attempts for one client.

    Args:
        key: the API key.
        base_url: the API root, for messages.
        traced: the session carries `trace_config`, so a failure before the request
            headers went out is known to be retry-safe. Without it (a caller's session),
            anything past connecting counts as sent.
        max_answer_bytes: the cap on a 2xx answer, counted after decompression.
    """

    def __init__(
        self,
        key: Secret,
        base_url: str,
        *,
        traced: bool,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
    ) -> None:
        self._key = key
        self._base_url = base_url
        self._traced = traced
        self._max_answer = max_answer_bytes
        # Built once, not per attempt (aiohttp copies them): fewer allocations per request.
        self._headers = {
            "Authorization": f"Bearer {key.get()}",
            "Accept": "application/json",
            "User-Agent": f"xai-images/{__version__}",
        }
        self._json_headers = {**self._headers, "Content-Type": "application/json"}
        self._binary_headers = {**self._headers, "Accept": "*/*"}
        self._timeouts: dict[Timeout, aiohttp.ClientTimeout] = {}

    def _client_timeout(self, timeout: Timeout) -> aiohttp.ClientTimeout:
        found = self._timeouts.get(timeout)
        if found is None:
            if len(self._timeouts) >= 64:  # calls with ever-new timeouts: stay bounded
                self._timeouts.clear()
            found = self._timeouts[timeout] = aiohttp.ClientTimeout(
                total=timeout.request, sock_connect=timeout.connect
            )
        return found

    async def send(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: str | URL,
        log_path: str,
        data: bytes | tuple[bytes, str] | None,
        timeout: Timeout,
        consume: Consume | None = None,
    ) -> Answer:
        """Send one attempt and return its 2xx answer. ``data`` is a JSON body, or a raw body
        and its content type (a multipart upload).

        ``consume`` reads a binary answer instead (a file's content, streamed to its target):
        it is awaited with the 2xx response, and what it returns is the answer's ``body``; its
        ``aiohttp`` errors count as a lost answer, as for a JSON one.

        Raises:
            APIStatusError: (a subclass per status) any non-2xx answer.
            APIConnectionError: nothing reached the server (``APITimeoutError`` for a connect
                timeout).
            OutcomeUnknownError: the request went out and the answer was lost.
            APIResponseError: a 2xx answer that is not the documented JSON.
            ConfigurationError: the URL is invalid.
        """
        headers = self._json_headers if data is not None else self._headers
        if consume is not None:
            headers = self._binary_headers
        if isinstance(data, tuple):
            raw, content_type = data
            data, headers = raw, {**self._headers, "Content-Type": content_type}
        state = _SendState()
        loop = asyncio.get_running_loop()
        started = loop.time()
        status: int | None = None
        request_id: str | None = None
        try:
            async with session.request(
                method,
                url,
                data=data,
                headers=headers,
                timeout=self._client_timeout(timeout),
                # No invented Content-Type on a POST without a body (aiohttp would add one).
                skip_auto_headers=_NO_BODY_TYPE if data is None else None,
                allow_redirects=False,  # a redirect must never carry the key elsewhere
                raise_for_status=False,
                trace_request_ctx=state,
            ) as resp:
                status = resp.status
                # A server may echo anything, the key included, in any header.
                request_id = self._key.redact_optional(resp.headers.get("x-request-id"))
                if not 200 <= status < 300:
                    error = await self._status_error(resp, method, log_path, request_id)
                    _log_exchange(method, log_path, str(status), started, request_id)
                    raise error
                if consume is not None:
                    consumed = await consume(resp)
                    answer_headers = self._key.redact_headers(resp.headers)
                    _log_exchange(method, log_path, str(status), started, request_id)
                    return Answer(status, answer_headers, request_id, consumed, [])
                self._check_announced_size(resp, method, log_path)
                scanner = B64ResponseScanner()
                received = 0
                ticket: int | None = None  # this answer's place in the decode line
                # Every answer on this loop decodes from one budget per loop iteration: N
                # answers arriving together are decoded over several iterations, not N chunks
                # (~0.3 ms each) in one.
                loop_budgets = budgets()
                decode, answers = loop_budgets.decode, loop_budgets.answers
                # Answers start decoding a few at a time (bounded memory, see _gate.Backlog).
                announced = resp.content_length or 0
                await answers.admit(announced)
                counted = announced
                try:
                    # aiohttp hands over decompressed data a bounded piece at a time, so counting
                    # here stops a compression bomb before it grows past the cap.
                    async for chunk in resp.content.iter_chunked(_READ_CHUNK):
                        received += len(chunk)
                        if received > self._max_answer:
                            raise self._too_large(method, log_path, status, started, request_id)
                        if not announced:
                            answers.add(len(chunk))
                            counted += len(chunk)
                        if ticket is None:
                            ticket = decode.ticket()
                        await decode.spend(max(len(chunk), ANSWER_MIN_SPEND), ticket)
                        scanner.feed(chunk)
                    skeleton, payloads = scanner.close()
                except ValueError as exc:
                    if isinstance(exc, aiohttp.ClientError):
                        raise
                    # Only the base64 scanner raises a plain ValueError here.
                    _log_exchange(method, log_path, f"{status} unreadable", started, request_id)
                    raise APIResponseError(
                        self._key.redact(f"the answer to {method} {log_path} is not valid: {exc}"),
                        method=method,
                        path=log_path,
                        request_id=request_id,
                    ) from exc
                finally:
                    answers.remove(counted)
                answer_headers = self._key.redact_headers(resp.headers)
        except APIError:
            raise
        except aiohttp.InvalidURL as exc:
            raise ConfigurationError(f"invalid API URL for {method} {log_path}") from exc
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise self._transport_error(exc, state, method, log_path, started, status) from exc
        _log_exchange(method, log_path, str(status), started, request_id)
        # The key echoed in the answer (a revised prompt, a URL) must not reach the manifest.
        skeleton = self._key.redact_bytes(skeleton)
        body = None
        if skeleton.strip():
            try:
                body = await _loads(skeleton, method, log_path, request_id)
            except APIResponseError:
                # 202 Accepted promises no body: text there (a proxy's "Accepted") still
                # means accepted; its reader decides from the status.
                if status != 202:
                    raise
        return Answer(status, answer_headers, request_id, body, payloads)

    def _check_announced_size(
        self, resp: aiohttp.ClientResponse, method: str, log_path: str
    ) -> None:
        """Refuse at once an uncompressed answer whose Content-Length is over the cap."""
        length = resp.content_length
        if (
            length is not None
            and length > self._max_answer
            and not resp.headers.get("Content-Encoding", "").strip()
        ):
            raise self._too_large(
                method, log_path, resp.status, None, resp.headers.get("x-request-id")
            )

    def _too_large(
        self,
        method: str,
        log_path: str,
        status: int,
        started: float | None,
        request_id: str | None,
    ) -> APIResponseError:
        if started is not None:
            _log_exchange(method, log_path, f"{status} too large", started, request_id)
        cap = self._max_answer
        return APIResponseError(
            f"the answer to {method} {log_path} is larger than {cap} bytes "
            f"({cap / 1048576:g} MiB) after decompression; it was not read further. Raise "
            "AsyncClient(max_answer_bytes=...) if answers this large are expected",
            method=method,
            path=log_path,
            request_id=request_id,
        )

    def _transport_error(
        self,
        exc: BaseException,
        state: _SendState,
        method: str,
        log_path: str,
        started: float,
        status: int | None,
    ) -> APIError:
        """Map an aiohttp/asyncio failure onto the error tree (``never pay twice``)."""
        is_timeout = isinstance(exc, asyncio.TimeoutError)
        kind = type(exc).__name__
        # Nothing reached the server when connecting failed, or (for the owned session, whose
        # trace hook tells) when the failure came before the request headers went out. For a
        # caller's session without the hook, anything past connecting counts as sent.
        not_sent = isinstance(exc, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError))
        if not not_sent and self._traced and status is None and not state.headers_sent:
            not_sent = True
        where = f"{method} {log_path}"
        _log_exchange(method, log_path, f"failed ({kind})", started, None)
        if not_sent:
            if is_timeout:
                return APITimeoutError(
                    f"{where}: connecting to {self._base_url} timed out; nothing was sent",
                    method=method,
                    path=log_path,
                )
            hint = connect_hint(self._base_url)
            return APIConnectionError(
                self._key.redact(f"{where}: could not connect to {self._base_url}: {exc}{hint}"),
                method=method,
                path=log_path,
            )
        reason = "timeout" if is_timeout else "disconnected"
        what = "timed out" if is_timeout else "lost its connection"
        if method == "GET":
            message = f"{where} {what} before the answer arrived; polling again is safe"
        else:
            message = (
                f"{where} {what} after the request was sent: the server may have generated, "
                "and billed, the images anyway. It was not retried so as not to pay twice; to "
                "retry such failures set AsyncClient(retry=RetryPolicy(retry_unknown_outcome="
                "True))"
            )
        return OutcomeUnknownError(message, reason=reason, method=method, path=log_path)

    async def _status_error(
        self,
        resp: aiohttp.ClientResponse,
        method: str,
        log_path: str,
        request_id: str | None,
    ) -> APIStatusError:
        status = resp.status
        text = ""
        try:
            raw = await resp.content.read(_MAX_ERROR_BODY)
            text = raw.decode("utf-8", "replace")
        except (aiohttp.ClientError, asyncio.TimeoutError):
            pass  # the status alone is enough to report
        text = self._key.redact(text)
        parsed: Any = None
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = None
        fields = error_fields(parsed, text)
        message = fields.message
        headers = self._key.redact_headers(resp.headers)
        if 300 <= status < 400:
            message = (
                f"the API answered a redirect to {headers.get('Location', '?')!r}; it is "
                "not followed, so that the API key never goes to another URL. Check base_url"
            )
        message = message or self._key.redact(resp.reason or "") or "no message"
        cls = status_error_class(status)
        if cls is NotFoundError:
            message += not_found_hint(self._base_url, log_path)
        kwargs: dict[str, Any] = {
            "status_code": status,
            "request_id": request_id,
            "code": fields.code,
            "type": fields.type,
            "param": fields.param,
            "headers": headers,
            "body": parsed if parsed is not None else text,
            "method": method,
            "path": log_path,
        }
        if cls is RateLimitError:
            return RateLimitError(message, retry_after=parse_retry_after(headers), **kwargs)
        return cls(message, **kwargs)


def _log_exchange(
    method: str, log_path: str, outcome: str, started: float, request_id: str | None
) -> None:
    if not _logger.isEnabledFor(logging.DEBUG):
        return
    elapsed = asyncio.get_running_loop().time() - started
    _logger.debug(
        "%s %s -> %s in %.3f s (request id %s)",
        method,
        log_path,
        outcome,
        elapsed,
        request_id or "-",
        extra={"xai_event": "exchange", "xai_request_id": request_id},
    )


_SCALARS = (int, float, bool, type(None))


async def dumps(body: Mapping[str, Any]) -> bytes:
    """``body`` as compact UTF-8 JSON; large ones (edit data URIs) encoded off the loop."""
    if _flat_and_small(body):
        # A generation: a few scalars and a prompt. No walk for nested data URIs.
        return _encode(body)
    if _approx_large(body):
        return await asyncio.to_thread(_encode, body)
    return _encode(body)


def _encode(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _flat_and_small(body: Mapping[str, Any]) -> bool:
    text = 0
    for value in body.values():
        if type(value) is str:
            text += len(value)
        elif not isinstance(value, _SCALARS):
            return False
    return text <= _LARGE_JSON


def _approx_large(body: Mapping[str, Any]) -> bool:
    total = 0
    stack: list[Any] = [body]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return total > _LARGE_JSON


async def _loads(skeleton: bytes, method: str, log_path: str, request_id: str | None) -> Any:
    try:
        # In slices: json.loads keeps the GIL, so even a thread would stall the event loop.
        return await jsonslice.loads(skeleton)
    except (ValueError, RecursionError) as exc:
        raise APIResponseError(
            f"the answer to {method} {log_path} is not JSON: {exc}",
            method=method,
            path=log_path,
            request_id=request_id,
        ) from exc
