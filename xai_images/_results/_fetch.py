"""Fetching one image URL: streamed, retried, resumed with ``Range``, stall and speed checked.

`Fetch` yields the body's chunks and hides every retry from its consumer: the attempts
come from the one retry loop of ``_retry.py`` (driven by ``DownloadOptions.retry``; a GET is
always safe to retry), a broken body resumes from the byte it stopped at when the server
supports ``Range``, and a server that answers a resume with the whole body makes the consumer
start over (or fails, when it cannot). Image URLs are on another host than the API: no
``Authorization`` header is ever sent here.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
from collections.abc import AsyncGenerator, Awaitable, Callable

import aiohttp
import attrs

from .._config import DownloadOptions
from .._errors import DownloadError, DownloadStalledError, ImageExpiredError, IntegrityError
from .._wire._gate import budgets
from .._wire._retry import Attempts, parse_retry_after
from ._sniff import SNIFF_BYTES, sniff_mime

__all__ = ["Fetch", "OnDownloadRetry"]

_EXPIRED = frozenset({403, 404, 410})
_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")

OnDownloadRetry = Callable[[int, float, str, DownloadError], None]
"""Called per scheduled retry: the failed attempt, the delay, the reason and the error."""


class _Failure(Exception):
    """An attempt failed in a way that may be retried."""

    def __init__(self, kind: str, detail: str, *, retry_after: float | None = None) -> None:
        self.kind = kind  # "status", "truncated", "stalled", "connection", "range"
        self.detail = detail
        self.retry_after = retry_after
        super().__init__(detail)


# Not a per-attempt dict (aiohttp copies it). identity: Content-Length and Range must count the
# bytes we write, not gzip bytes.
_PLAIN_HEADERS = {"Accept-Encoding": "identity"}


@functools.lru_cache(maxsize=16)
def _client_timeout(connect: float | None, stall: float | None) -> aiohttp.ClientTimeout:
    # One object per setting, not one per image.
    return aiohttp.ClientTimeout(total=None, connect=None, sock_connect=connect, sock_read=stall)


@attrs.define(eq=False, repr=False)
class Fetch:
    """One URL download: yields body chunks, retrying and resuming on its own.

    ``restart`` is awaited when the server answers a resume with the whole body: it must reset
    whatever consumed the earlier bytes and return ``True``, or return ``False`` when that is
    impossible (bytes were already handed to a caller). ``on_retry`` is told of each retry.

    Attributes:
        url: the URL.
        received: body bytes received so far.
        total: the body's length when the server said it, else ``None``.
        mime: the image type sniffed from the first bytes, once known.
    """

    _session: aiohttp.ClientSession
    url: str
    _options: DownloadOptions
    _chunk_size: int
    _restart: Callable[[], Awaitable[bool]]
    _on_retry: OnDownloadRetry | None = None
    received: int = attrs.field(default=0, init=False)
    total: int | None = attrs.field(default=None, init=False)
    mime: str | None = attrs.field(default=None, init=False)
    _timeout: aiohttp.ClientTimeout = attrs.field(init=False)

    @_timeout.default
    def _timeout_for_options(self) -> aiohttp.ClientTimeout:
        return _client_timeout(self._options.connect_timeout, self._options.stall_timeout)

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        """Yield the body's chunks; every retry and resume happens inside.

        Raises:
            ImageExpiredError: the URL answered 403/404/410 (not retried).
            DownloadStalledError, IntegrityError, DownloadError: retries ran out, or the bytes
                are not an image.
        """
        use_range = True
        attempts = Attempts(self._options.retry, f"GET {self.url}", on_retry=self._report)
        async for attempt in attempts:
            try:
                # Closed explicitly so that the response goes back to the pool at once when the
                # consumer stops early, not whenever the generator is garbage-collected.
                async with contextlib.aclosing(self._attempt(use_range)) as body:
                    async for chunk in body:
                        yield chunk
                return
            except _Failure as failure:
                if failure.kind == "range":
                    use_range = False
                last: _Failure = failure
                cause: BaseException | None = failure.__cause__
            except asyncio.TimeoutError as exc:
                if isinstance(exc, aiohttp.ConnectionTimeoutError):
                    detail = f"connect timed out after {self._options.connect_timeout:g} s"
                    last = _Failure("connection", detail)
                else:
                    last = _Failure("stalled", f"no data for {self._options.stall_timeout:g} s")
                cause = exc
            except aiohttp.InvalidURL as exc:
                raise DownloadError(f"invalid image URL: {self.url}", url=self.url) from exc
            except aiohttp.ClientPayloadError as exc:
                last = _Failure("truncated", f"body cut short ({exc})")
                cause = exc
            except (aiohttp.ClientError, OSError) as exc:
                last = _Failure("connection", f"{type(exc).__name__}: {exc}")
                cause = exc
            error = self._error(last, cause, f"on attempt {attempt.number}")
            if not attempt.retry(error, retry_after=last.retry_after, detail=last.detail):
                raise self._error(last, cause, attempt.gave_up or "") from cause
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover

    def _report(self, attempt: int, delay: float, error: BaseException, detail: str) -> None:
        if self._on_retry is not None and isinstance(error, DownloadError):
            self._on_retry(attempt, delay, detail, error)

    def _error(self, failure: _Failure, cause: BaseException | None, why: str) -> DownloadError:
        """The public error for ``failure`` (raised when giving up, reported on a retry)."""
        message = f"download of {self.url} failed {why}: {failure.detail}"
        error: DownloadError
        if failure.kind == "stalled":
            error = DownloadStalledError(message, url=self.url)
        elif failure.kind == "truncated":
            error = IntegrityError(message, url=self.url)
        else:
            error = DownloadError(message, url=self.url)
        error.__cause__ = cause
        return error

    async def _attempt(self, use_range: bool) -> AsyncGenerator[bytes, None]:
        ranged = use_range and self.received > 0
        headers = _PLAIN_HEADERS
        if ranged:
            headers = {**_PLAIN_HEADERS, "Range": f"bytes={self.received}-"}
        # Starts are admitted a few per loop iteration, shared with the API requests (_gate.py).
        await budgets().starts.spend()
        async with self._session.get(self.url, headers=headers, timeout=self._timeout) as resp:
            await self._check_status(resp, ranged)
            head = b""
            window_start = asyncio.get_running_loop().time()
            window_bytes = 0
            async for chunk in resp.content.iter_chunked(self._chunk_size):
                if self._options.min_speed is not None:
                    window_bytes += len(chunk)
                    now = asyncio.get_running_loop().time()
                    if now - window_start >= self._options.speed_window:
                        speed = window_bytes / (now - window_start)
                        if speed < self._options.min_speed:
                            raise _Failure("stalled", f"below the minimum speed ({speed:.0f} B/s)")
                        window_start, window_bytes = now, 0
                if self.received == 0 and len(head) + len(chunk) < SNIFF_BYTES:
                    head += chunk
                    continue
                if head:
                    chunk, head = head + chunk, b""
                if self.received == 0:
                    self._sniff(chunk, resp)
                self.received += len(chunk)
                yield chunk
            if head:
                self._sniff(head, resp)
                self.received += len(head)
                yield head
            if self.total is not None and self.received < self.total:
                raise _Failure(
                    "truncated", f"body cut short ({self.received} of {self.total} bytes)"
                )
            if self.total is not None and self.received > self.total:
                raise IntegrityError(
                    f"{self.url} sent {self.received} bytes, more than its Content-Length "
                    f"{self.total}",
                    url=self.url,
                )
            if self.received == 0:
                raise IntegrityError(f"{self.url} answered with an empty body", url=self.url)

    def _sniff(self, head: bytes, resp: aiohttp.ClientResponse) -> None:
        mime = sniff_mime(head)
        if mime is None:
            ctype = resp.headers.get("Content-Type", "unknown")
            raise IntegrityError(
                f"{self.url} did not return an image (Content-Type {ctype}, HTTP {resp.status} "
                f"from {resp.url.host})",
                url=self.url,
            )
        if self.mime is not None and mime != self.mime:
            raise IntegrityError(f"{self.url} changed image type between attempts", url=self.url)
        self.mime = mime

    async def _check_status(self, resp: aiohttp.ClientResponse, ranged: bool) -> None:
        status = resp.status
        if status in _EXPIRED:
            raise ImageExpiredError(
                f"image URL answered HTTP {status}: it has expired (temporary image URLs expire "
                f"soon after generation; download promptly): {self.url}",
                url=self.url,
            )
        if status in _RETRY_STATUS:
            raise _Failure("status", f"HTTP {status}", retry_after=parse_retry_after(resp.headers))
        if status == 416 and ranged:
            raise _Failure("range", "the server refused the Range request")
        if status == 206 and ranged:
            match = _CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", "").strip())
            if match is None or int(match.group(1)) != self.received:
                raise _Failure("range", "the server answered a different range")
            if match.group(3) != "*":
                self.total = int(match.group(3))
            return
        if status == 200:
            if self.received > 0:
                # The server ignored Range: start over.
                if not await self._restart():
                    raise DownloadError(
                        f"{self.url}: the connection broke after bytes were handed out and the "
                        "server cannot resume (no Range support)",
                        url=self.url,
                    )
                self.received = 0
            self.total = None if "Content-Encoding" in resp.headers else resp.content_length
            return
        raise DownloadError(f"image URL answered HTTP {status}: {self.url}", url=self.url)
