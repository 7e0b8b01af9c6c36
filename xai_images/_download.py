"""Streamed, retried, resumable downloads and atomic saves of generated images.

Every image is written under a temporary name (``.<final name>.<random>.part``) in the target
directory and renamed only once complete and checked (length against ``Content-Length``, image
signature), so a failure at any point leaves no file under the final name and no temporary file.

Downloads go through the client's one pooled session without any ``Authorization`` header: the
image host is not the API host and must never see the key.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import hashlib
import logging
import os
import re
import secrets
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, Literal, NoReturn, Protocol, TypeVar

import aiohttp
import attrs

from ._errors import (
    DownloadError,
    DownloadStalledError,
    FileCollisionError,
    ImageBlockedError,
    ImageExpiredError,
    IntegrityError,
    SaveError,
    ValidationError,
)
from ._progress import notify
from ._retry import RetryPolicy, parse_retry_after, sleep
from ._sniff import IMAGE_EXTENSIONS, SNIFF_BYTES, extension_for, sniff_mime

__all__ = ["DownloadOptions", "OnExists", "SavedImage", "Transfers"]

_log = logging.getLogger("xai_images")

OnExists = Literal["fail", "overwrite", "skip"]
"""What to do when the final file name is taken.

- ``"fail"``: raise :class:`FileCollisionError` (even when the existing file is identical).
- ``"overwrite"``: replace it atomically.
- ``"skip"``: keep an identical existing file and report ``SavedImage.skipped = True``; a
  different existing file still raises :class:`FileCollisionError` (nothing is lost silently).
"""

_ON_EXISTS = ("fail", "overwrite", "skip")
_EXPIRED = frozenset({403, 404, 410})
_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_SUFFIX_MIME = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".jpe": "image/jpeg",
    ".webp": "image/webp",
}
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
# Block size for hashing existing files.
_SLICE = 1024 * 1024
# URL images are written in batches of at least this (or chunk_size, if larger): an image up to
# this size takes one worker-thread hop (open, write, close, rename), a larger one one per batch.
_BATCH = 1024 * 1024
# Seconds a paused download keeps received bytes only in memory before writing them.
_IDLE_FLUSH = 0.25
_WRITEV: Callable[[int, list[memoryview]], int] | None = getattr(os, "writev", None)
try:
    _IOV_MAX = max(16, min(os.sysconf("SC_IOV_MAX"), 1024))
except (AttributeError, ValueError, OSError):
    _IOV_MAX = 16

_T = TypeVar("_T")
# aiohttp >= 3.10 tells a connect timeout apart from a read timeout; older ones do not.
_CONNECT_TIMEOUT: Any = getattr(aiohttp, "ConnectionTimeoutError", ())


# Threads that write files (without fsync). Few on purpose: the work is short and mostly
# outside the GIL, and every extra thread adds GIL hand-offs with the event loop (the default
# executor's 6 threads cost about 8% of the throughput and CPU of saving 500 kB images).
_WRITERS = 2
_pool: concurrent.futures.ThreadPoolExecutor | None = None


_pool_lock = threading.Lock()


def _writer_pool() -> concurrent.futures.ThreadPoolExecutor:
    global _pool
    pool = _pool
    if pool is None:
        # Event loops in several threads may get here at once.
        with _pool_lock:
            if _pool is None:
                _pool = concurrent.futures.ThreadPoolExecutor(
                    _WRITERS, thread_name_prefix="xai-images"
                )
            pool = _pool
    return pool


def _forget_pool() -> None:
    # A forked child has none of the parent's threads: start a new pool on first use (and a
    # new lock, in case another thread held it at the fork).
    global _pool, _pool_lock
    _pool = None
    _pool_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


# A final name may be up to 255 bytes; the temporary one adds 15 characters around it.
_TMP_NAME_KEEP = 200


def _positive(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None and attribute.name == "min_speed":
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"DownloadOptions.{attribute.name} must be > 0, got {value!r}")


@attrs.frozen
class DownloadOptions:
    """How images are downloaded and saved (one per client: ``AsyncClient(download=...)``).

    Attributes:
        concurrency: downloads and writes in flight at once across the whole client (a
            semaphore); ``save_all(concurrency=k)`` may lower it for one call.
        chunk_size: bytes read from the socket per step. Downloaded bytes are written to disk
            in batches of ``max(chunk_size, 1 MiB)`` (an image up to that size in a single
            write); peak memory is about ``concurrency * (1 MiB + 2 * chunk_size)``.
        retry: attempts, backoff and time cap for downloads (GETs are always safe to retry).
        connect_timeout: seconds to open a connection to the image host.
        stall_timeout: seconds without a single byte (before or during the body) after which
            the attempt is aborted and retried, resuming where possible.
        min_speed: bytes per second, averaged over ``speed_window``, below which an attempt
            counts as stalled and is retried (``None``: no minimum).
        speed_window: seconds over which ``min_speed`` is measured.
        fsync: flush each file (and its directory entry) to the disk before reporting it saved;
            slower, but survives a power loss.
    """

    concurrency: int = attrs.field(default=16, validator=_positive)
    chunk_size: int = attrs.field(default=256 * 1024, validator=_positive)
    retry: RetryPolicy = attrs.field(
        factory=lambda: RetryPolicy(max_attempts=5, max_elapsed=300.0, max_backoff=4.0)
    )
    connect_timeout: float = attrs.field(default=10.0, validator=_positive)
    stall_timeout: float = attrs.field(default=15.0, validator=_positive)
    min_speed: float | None = attrs.field(default=None, validator=_positive)
    speed_window: float = attrs.field(default=5.0, validator=_positive)
    fsync: bool = False


@attrs.frozen
class SavedImage:
    """What was written for one image.

    Attributes:
        path: the final path (its extension comes from the image bytes).
        bytes: the file size.
        sha256: hex SHA-256 of the file, computed while writing.
        mime_type: the sniffed type: ``image/png``, ``image/jpeg`` or ``image/webp``.
        source: ``"url"`` (downloaded) or ``"b64_json"`` (decoded from the answer).
        url: the image URL, for ``"url"`` images.
        index: the image's position in its answer.
        request_id: the API request id of the answer.
        skipped: ``True`` when an identical file was already there (``on_exists="skip"``) and
            nothing was written.
    """

    path: Path
    bytes: int
    sha256: str
    mime_type: str
    source: str
    url: str | None
    index: int
    request_id: str | None
    skipped: bool = False

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        from ._display import saved_bundle  # display code is only loaded in notebooks

        return saved_bundle(self)


class _Image(Protocol):
    """What the transfer layer reads from a ``GeneratedImage``."""

    @property
    def url(self) -> str | None: ...
    @property
    def content(self) -> bytes | bytearray | memoryview | None: ...
    @property
    def index(self) -> int: ...
    @property
    def request_id(self) -> str | None: ...
    @property
    def blocked(self) -> bool: ...


def _blocked_error(image: _Image) -> ImageBlockedError:
    return ImageBlockedError(
        f"image {image.index} of request {image.request_id or '(no id)'} was withheld by "
        "moderation: the answer had neither url nor b64_json"
    )


def _check_on_exists(on_exists: str) -> None:
    if on_exists not in _ON_EXISTS:
        raise ValidationError("on_exists", on_exists, "one of 'fail', 'overwrite', 'skip'")


def _save_error(exc: OSError, path: Path, url: str | None) -> SaveError:
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        reason += " (disk full)"
    return SaveError(f"cannot write {path}: {reason}", path=path, url=url)


def _final_path(target: Path, is_dir: bool, stem: str, mime: str) -> Path:
    """The file to write: ``target/stem.ext`` for a directory, else ``target`` with its suffix
    corrected to the sniffed type (added when missing or not an image suffix)."""
    ext = extension_for(mime)
    if is_dir:
        return target / (stem + ext)
    suffix = target.suffix.lower()
    if _SUFFIX_MIME.get(suffix) == mime:
        return target
    if suffix in IMAGE_EXTENSIONS:
        return target.with_suffix(ext)
    return target.with_name(target.name + ext)


def _stem_of(image: _Image) -> str:
    stem = getattr(image, "stem", None)
    if isinstance(stem, str) and stem:
        return stem
    return f"{image.request_id or 'image'}-{image.index}"


def _format_name(pattern: str, image: _Image) -> str:
    try:
        name = pattern.format(
            request_id=image.request_id or "image", index=image.index, stem=_stem_of(image)
        )
    except (KeyError, IndexError, ValueError) as exc:
        raise ValidationError(
            "name", pattern, "a pattern using only {request_id}, {index} and {stem}"
        ) from exc
    if not name or name in (".", "..") or os.sep in name or (os.altsep and os.altsep in name):
        raise ValidationError("name", pattern, "a plain file name (no directories)")
    return name


def _hash_file(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while block := handle.read(_SLICE):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class _Abandoned(Exception):
    """The caller was cancelled while the file was being written: do not commit it."""


def _write_all(fd: int, pieces: list[memoryview]) -> None:
    """Write every piece, in order, with as few system calls as possible."""
    if _WRITEV is None:
        for piece in pieces:
            while piece:
                piece = piece[os.write(fd, piece) :]
        return
    while pieces:
        written = _WRITEV(fd, pieces[:_IOV_MAX])
        # Short writes are rare on regular files: drop what went out and go on.
        done = 0
        while done < len(pieces) and written >= len(pieces[done]):
            written -= len(pieces[done])
            done += 1
        pieces = pieces[done:]
        if written:
            pieces[0] = pieces[0][written:]


class _PartFile:
    """A temporary file beside the final one, renamed into place only when complete.

    Blocking calls run in a worker thread, as few as possible: :meth:`put` opens the file when
    needed, appends and commits in a single hop (one hop per image when it fits in memory), as
    every hop costs CPU and makes the worker compete with the event loop for the GIL. If the
    caller is cancelled while a hop is in flight, the hop does not commit, and :meth:`abort`
    waits for it before closing the descriptor, so a thread never writes into a reused
    descriptor number.
    """

    def __init__(self, final: Path, *, fsync: bool, url: str | None) -> None:
        self.final = final
        self.url = url
        self._fsync = fsync
        self.tmp: Path | None = None
        self._fd: int | None = None
        self._digest = hashlib.sha256()
        self.size = 0
        self._inflight: asyncio.Future[Any] | None = None
        self._abandoned = False  # read by the worker thread before it commits

    @property
    def opened(self) -> bool:
        """Whether the temporary file exists (a hop has created it)."""
        return self._fd is not None

    async def _run(self, func: Callable[..., _T], *args: Any) -> _T:
        future: asyncio.Future[_T]
        if self._fsync:
            # fsync waits on the disk: many may be in flight at once.
            future = asyncio.ensure_future(asyncio.to_thread(func, *args))
        else:
            future = asyncio.get_running_loop().run_in_executor(_writer_pool(), func, *args)
        self._inflight = future
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            self._abandoned = True
            raise
        except OSError as exc:
            raise _save_error(exc, self.final, self.url) from exc

    async def put(
        self, pieces: list[bytes | bytearray | memoryview], *, commit: str | None = None
    ) -> bool:
        """Append ``pieces`` (opening the file first if needed) and hash them, in one hop.

        With ``commit`` (an :data:`OnExists` policy) the file is then closed and renamed into
        place in the same hop; returns ``True`` when an identical file was kept.

        Raises:
            FileCollisionError: the name is taken and the policy does not allow replacing it.
            SaveError: the file system refused.
        """
        return await self._run(self._put_sync, pieces, commit)

    def _put_sync(self, pieces: list[bytes | bytearray | memoryview], commit: str | None) -> bool:
        if self._fd is None:
            self._open_sync()
        if pieces:
            self._write_sync(pieces)
        if commit is None:
            return False
        if self._abandoned:
            raise _Abandoned
        return self._commit_sync(commit)

    def _open_sync(self) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        flags |= getattr(os, "O_CLOEXEC", 0)
        for _ in range(10):
            # Keep the temporary name within the 255-byte limit a valid final name may reach.
            stem = self.final.name[:_TMP_NAME_KEEP]
            tmp = self.final.with_name(f".{stem}.{secrets.token_hex(4)}.part")
            try:
                self._fd = os.open(tmp, flags, 0o666)
            except FileExistsError:
                continue
            except FileNotFoundError:
                # The directory is missing: create it, then try again. Trying first saves a
                # mkdir (and a stat) per file when it exists, which is nearly always.
                self.final.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(tmp, flags, 0o666)
            self.tmp = tmp
            return
        raise FileExistsError(errno.EEXIST, "could not create a unique temporary file")

    def _write_sync(self, pieces: list[bytes | bytearray | memoryview]) -> None:
        assert self._fd is not None
        views = []
        for piece in pieces:
            view = memoryview(piece)
            if view.ndim != 1 or view.format != "B":
                view = view.cast("B")
            if view:
                # hashlib releases the GIL for buffers above 2 KiB.
                self._digest.update(view)
                views.append(view)
        _write_all(self._fd, views)
        self.size += sum(len(view) for view in views)

    async def truncate(self) -> None:
        """Start over from byte 0 (the server would not resume)."""
        if self._fd is None:
            return
        await self._run(self._truncate_sync)

    def _truncate_sync(self) -> None:
        assert self._fd is not None
        os.ftruncate(self._fd, 0)
        os.lseek(self._fd, 0, os.SEEK_SET)
        self._digest = hashlib.sha256()
        self.size = 0

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    def _commit_sync(self, on_exists: str) -> bool:
        assert self._fd is not None
        assert self.tmp is not None
        fd, self._fd = self._fd, None
        try:
            if self._fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        if on_exists == "overwrite":
            os.replace(self.tmp, self.final)
            self.tmp = None
            self._sync_dir()
            return False
        try:
            # A hard link is a rename that refuses to replace: no window for a race.
            os.link(self.tmp, self.final)
        except FileExistsError:
            return self._collide(on_exists)
        except OSError:
            # No hard links here (FAT, some network file systems): check, then rename.
            if os.path.lexists(self.final):
                return self._collide(on_exists)
            os.rename(self.tmp, self.final)
        else:
            os.unlink(self.tmp)
        self.tmp = None
        self._sync_dir()
        return False

    def _collide(self, on_exists: str) -> bool:
        identical = False
        if self.final.is_file():
            identical = _hash_file(self.final) == (self.size, self.sha256)
        if identical and on_exists == "skip":
            self._discard_sync()
            return True
        self._discard_sync()
        what = "an identical file" if identical else "a different file"
        hint = "" if identical else "; pass on_exists='overwrite' to replace it"
        raise FileCollisionError(
            f"{self.final} already exists ({what}, on_exists={on_exists!r}){hint}",
            path=self.final,
            url=self.url,
        )

    def _sync_dir(self) -> None:
        if not self._fsync:
            return
        with contextlib.suppress(OSError):
            dir_fd = os.open(self.final.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def _discard_when_done(self, future: asyncio.Future[Any]) -> None:
        if not future.cancelled():
            future.exception()  # retrieved, so asyncio does not log it as lost
        self._discard_sync()

    def _discard_sync(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        if self.tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.tmp)
            self.tmp = None

    async def abort(self) -> None:
        """Remove the temporary file; safe to call on every failure path, also when cancelled.

        The unlink itself is done on the loop: it is one fast call, and a failure path must
        finish even if cancelled again.
        """
        self._abandoned = True
        inflight = self._inflight
        if inflight is not None and not inflight.done():
            try:
                await asyncio.shield(inflight)
            except BaseException:  # cleanup below must run whatever happened
                if not inflight.done():
                    inflight.add_done_callback(self._discard_when_done)
                    return
        self._discard_sync()


class _Failure(Exception):
    """An attempt failed in a way that may be retried."""

    def __init__(self, kind: str, detail: str, *, retry_after: float | None = None) -> None:
        self.kind = kind  # "status", "truncated", "stalled", "connection", "range"
        self.detail = detail
        self.retry_after = retry_after
        super().__init__(detail)


class _Fetch:
    """One URL download: yields body chunks, retrying and resuming on its own.

    ``restart`` is awaited when the server answers a resume with the whole body: it must reset
    whatever consumed the earlier bytes and return ``True``, or return ``False`` when that is
    impossible (bytes were already handed to a caller).
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        options: DownloadOptions,
        chunk_size: int,
        restart: Callable[[], Awaitable[bool]],
    ) -> None:
        self._session = session
        self.url = url
        self._options = options
        self._chunk_size = chunk_size
        self._restart = restart
        self.received = 0
        self.total: int | None = None
        self.mime: str | None = None
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            connect=None,
            sock_connect=options.connect_timeout,
            sock_read=options.stall_timeout,
        )

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        policy = self._options.retry
        loop = asyncio.get_running_loop()
        started = loop.time()
        use_range = True
        attempt = 0
        while True:
            attempt += 1
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
                kind = "connection" if isinstance(exc, _CONNECT_TIMEOUT) else "stalled"
                last = _Failure(kind, f"no data for {self._options.stall_timeout:g} s")
                if kind == "connection":
                    last.detail = f"connect timed out after {self._options.connect_timeout:g} s"
                cause = exc
            except aiohttp.InvalidURL as exc:
                raise DownloadError(f"invalid image URL: {self.url}", url=self.url) from exc
            except aiohttp.ClientPayloadError as exc:
                last = _Failure("truncated", f"body cut short ({exc})")
                cause = exc
            except (aiohttp.ClientError, OSError) as exc:
                last = _Failure("connection", f"{type(exc).__name__}: {exc}")
                cause = exc
            retry_after = last.retry_after
            if attempt >= policy.max_attempts:
                self._give_up(last, cause, f"after {attempt} attempts")
            if retry_after is not None and retry_after > policy.max_retry_after:
                self._give_up(last, cause, f"(the server asked to wait {retry_after:g} s)")
            delay = policy.delay(attempt, retry_after)
            elapsed = loop.time() - started
            if policy.max_elapsed is not None and elapsed + delay > policy.max_elapsed:
                self._give_up(last, cause, f"after {elapsed:.1f} s")
            _log.debug(
                "retrying GET %s in %.2f s (attempt %d of %d): %s",
                self.url,
                delay,
                attempt + 1,
                policy.max_attempts,
                last.detail,
            )
            # Bulk jobs count download retries through this hook (a no-op outside one).
            notify(
                "download_retry",
                delay=delay,
                error=self._error(last, cause, f"on attempt {attempt}"),
            )
            await sleep(delay)

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

    def _give_up(self, failure: _Failure, cause: BaseException | None, why: str) -> NoReturn:
        raise self._error(failure, cause, why) from cause

    async def _attempt(self, use_range: bool) -> AsyncGenerator[bytes, None]:
        ranged = use_range and self.received > 0
        # identity: Content-Length and Range must count the bytes we write, not gzip bytes.
        headers = {"Accept-Encoding": "identity"}
        if ranged:
            headers["Range"] = f"bytes={self.received}-"
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


class Transfers:
    """Downloads and saves the images of one client (one pooled session, one semaphore).

    Built by ``AsyncClient`` as ``Transfers(lambda: session, options)``; the image methods
    (``GeneratedImage.save/stream/read``, ``ImagesResponse.save``) delegate here.
    """

    def __init__(
        self, session: Callable[[], aiohttp.ClientSession], options: DownloadOptions | None = None
    ) -> None:
        self._session = session
        self.options = options if options is not None else DownloadOptions()
        self._semaphore = asyncio.Semaphore(self.options.concurrency)
        self._made_dirs: set[Path] = set()

    def __repr__(self) -> str:
        return f"Transfers(options={self.options!r})"

    async def stream(self, image: _Image, *, chunk_size: int | None = None) -> AsyncIterator[bytes]:
        """Yield the image's raw bytes as they arrive (URL) or in slices (``b64_json``).

        A broken download is retried transparently before the first chunk was yielded, and
        afterwards only by resuming with a Range request. Holds a download slot until the
        iteration ends: iterate to the end or close it (``contextlib.aclosing``).

        Raises:
            ImageBlockedError: the image was withheld by moderation.
            ImageExpiredError: the URL expired (HTTP 403/404); not retried.
            DownloadStalledError, IntegrityError, DownloadError: retries ran out, or the bytes
                are not an image.
        """
        if chunk_size is not None and (
            isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
        ):
            raise ValidationError("chunk_size", chunk_size, "an int >= 1 (bytes) or None")
        size = chunk_size or self.options.chunk_size
        if image.blocked:
            raise _blocked_error(image)
        content = image.content
        if content is not None:
            view = memoryview(content)
            for start in range(0, len(view), size):
                yield bytes(view[start : start + size])
            return
        url = image.url
        assert url is not None
        yielded = False

        async def restart() -> bool:
            return not yielded

        async with self._semaphore:
            fetch = _Fetch(self._session(), url, self.options, size, restart)
            async with contextlib.aclosing(fetch.chunks()) as chunks:
                async for chunk in chunks:
                    yielded = True
                    yield chunk

    async def save(
        self, image: _Image, path: str | os.PathLike[str], *, on_exists: OnExists = "fail"
    ) -> SavedImage:
        """Write one image to ``path`` atomically and return what was written.

        Naming: if ``path`` is an existing directory (or ends with a separator), the file is
        ``<request_id>-<index>.<ext>`` in it. Otherwise the extension is corrected to the
        sniffed type: added when missing (``fox`` -> ``fox.png``) or not an image suffix
        (``fox.v2`` -> ``fox.v2.png``), replaced when it names another image type
        (``fox.jpg`` holding PNG bytes -> ``fox.png``). ``SavedImage.path`` is the truth.
        Missing parent directories are created.

        Raises:
            ImageBlockedError: the image was withheld by moderation.
            ImageExpiredError: the URL expired (HTTP 403/404); not retried.
            DownloadStalledError, IntegrityError, DownloadError: retries ran out, or the bytes
                are not an image.
            FileCollisionError: the name is taken (see :data:`OnExists`).
            SaveError: the file could not be written (disk full, permission denied, ...); the
                message names the path.
        """
        _check_on_exists(on_exists)
        if image.blocked:
            raise _blocked_error(image)
        target = Path(path)
        as_dir = str(path).endswith(("/", os.sep))
        async with self._semaphore:
            try:
                is_dir = as_dir or await asyncio.to_thread(target.is_dir)
            except OSError as exc:
                raise _save_error(exc, target, image.url) from exc
            return await self._save(image, target, is_dir, _stem_of(image), on_exists)

    async def save_all(
        self,
        images: Iterable[_Image],
        directory: str | os.PathLike[str],
        *,
        name: str = "{request_id}-{index}",
        on_exists: OnExists = "fail",
        concurrency: int | None = None,
    ) -> list[SavedImage]:
        """Save many images into ``directory`` in parallel; returns results in input order.

        ``name`` is formatted with ``request_id`` (``"image"`` when unknown), ``index`` and
        ``stem``; the sniffed extension is appended. ``concurrency`` may lower the client's
        limit for this call. Every image is attempted even if some fail; files that were saved
        stay (each is complete and checked), failed ones leave nothing behind, and then the
        first error in input order is raised. Call :meth:`save` per image for per-image
        outcomes.

        Raises:
            ValidationError: a bad ``name`` pattern, two images mapping to the same name, or a
                bad ``concurrency``/``on_exists``.
            ImageBlockedError, DownloadError and subclasses: see :meth:`save`.
        """
        _check_on_exists(on_exists)
        if concurrency is not None and (
            isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1
        ):
            raise ValidationError("concurrency", concurrency, "an int >= 1")
        items = list(images)
        stems = [_format_name(name, image) for image in items]
        if len(set(stems)) != len(stems):
            raise ValidationError("name", name, "a pattern giving each image its own name")
        root = Path(directory)
        # One mkdir hop per directory and client, not per call: each file creates its
        # directory again anyway if it has gone in between.
        if root not in self._made_dirs:
            try:
                await asyncio.to_thread(root.mkdir, parents=True, exist_ok=True)
            except OSError as exc:
                raise _save_error(exc, root, None) from exc
            if len(self._made_dirs) >= 1024:
                self._made_dirs.clear()
            self._made_dirs.add(root)
        limit = asyncio.Semaphore(concurrency) if concurrency is not None else None

        async def one(image: _Image, stem: str) -> SavedImage:
            if image.blocked:
                raise _blocked_error(image)
            async with contextlib.AsyncExitStack() as stack:
                if limit is not None:
                    await stack.enter_async_context(limit)
                await stack.enter_async_context(self._semaphore)
                return await self._save(image, root, True, stem, on_exists)
            raise AssertionError("unreachable")  # pragma: no cover

        results = await asyncio.gather(
            *(one(image, stem) for image, stem in zip(items, stems, strict=True)),
            return_exceptions=True,
        )
        saved: list[SavedImage] = []
        for result in results:
            if isinstance(result, BaseException):
                raise result
            saved.append(result)
        return saved

    async def _save(
        self, image: _Image, target: Path, is_dir: bool, stem: str, on_exists: str
    ) -> SavedImage:
        content = image.content
        if content is not None:
            return await self._save_bytes(image, content, target, is_dir, stem, on_exists)
        assert image.url is not None
        return await self._save_url(image, image.url, target, is_dir, stem, on_exists)

    async def _save_bytes(
        self,
        image: _Image,
        content: bytes | bytearray | memoryview,
        target: Path,
        is_dir: bool,
        stem: str,
        on_exists: str,
    ) -> SavedImage:
        mime = sniff_mime(content)
        if mime is None:
            raise IntegrityError(
                f"image {image.index} of request {image.request_id or '(no id)'}: the b64_json "
                "data is not a PNG, JPEG or WebP image"
            )
        part = _PartFile(
            _final_path(target, is_dir, stem, mime), fsync=self.options.fsync, url=None
        )
        try:
            # One hop: open, write, hash, close, rename.
            skipped = await part.put([content], commit=on_exists)
        except BaseException:
            await part.abort()
            raise
        return self._result(image, part, mime, "b64_json", skipped)

    async def _save_url(
        self, image: _Image, url: str, target: Path, is_dir: bool, stem: str, on_exists: str
    ) -> SavedImage:
        part: _PartFile | None = None
        # Chunks received and not yet written: kept as they came (no copy) and handed to the
        # worker thread in batches, written with one writev.
        pending: list[bytes | bytearray | memoryview] = []
        pending_bytes = 0
        # A body that pauses (slow or stalled server) does not keep its bytes only in memory:
        # after a short idle time they are written in the background.
        timer: asyncio.TimerHandle | None = None
        background: asyncio.Future[bool] | None = None
        loop = asyncio.get_running_loop()

        def flush_in_background() -> None:
            nonlocal pending, pending_bytes, timer, background
            timer = None
            if part is None or not pending or background is not None:
                return
            pieces, pending, pending_bytes = pending, [], 0
            background = asyncio.ensure_future(part.put(pieces))

        async def settle() -> None:
            nonlocal background
            if background is not None:
                done, background = background, None
                await done

        async def restart() -> bool:
            # Bytes buffered or written from the earlier attempt are void.
            nonlocal pending, pending_bytes
            await settle()
            pending, pending_bytes = [], 0
            if part is not None:
                await part.truncate()
            return True

        size = self.options.chunk_size
        batch = max(size, _BATCH)
        # Well within the stall timeout, so that the bytes are on disk before a retry.
        idle = min(_IDLE_FLUSH, self.options.stall_timeout / 4)
        fetch = _Fetch(self._session(), url, self.options, size, restart)
        try:
            async with contextlib.aclosing(fetch.chunks()) as chunks:
                async for chunk in chunks:
                    if part is None:
                        assert fetch.mime is not None
                        final = _final_path(target, is_dir, stem, fetch.mime)
                        part = _PartFile(final, fsync=self.options.fsync, url=url)
                    pending.append(chunk)
                    pending_bytes += len(chunk)
                    # A Range resume asks from fetch.received, which counts these pending
                    # bytes too: they stay here and are written in order before what follows.
                    if pending_bytes >= batch:
                        if timer is not None:
                            timer.cancel()
                            timer = None
                        await settle()
                        pieces, pending, pending_bytes = pending, [], 0
                        await part.put(pieces)
                    elif timer is None:
                        timer = loop.call_later(idle, flush_in_background)
            if timer is not None:
                timer.cancel()
                timer = None
            await settle()
            if part is None:  # pragma: no cover  (_Fetch raises on an empty body)
                raise IntegrityError(f"{url} answered with an empty body", url=url)
            if fetch.total is not None and part.size + pending_bytes != fetch.total:
                raise IntegrityError(
                    f"{url}: wrote {part.size + pending_bytes} bytes, expected {fetch.total}",
                    url=url,
                )
            assert fetch.mime is not None
            last, pending, pending_bytes = pending, [], 0
            skipped = await part.put(last, commit=on_exists)
        except BaseException:
            if timer is not None:
                timer.cancel()
            if background is not None:
                background.cancel()
                # Retrieved, so that asyncio does not log it; abort() waits for its thread.
                background.add_done_callback(_retrieve)
            if part is not None:
                await part.abort()
            raise
        return self._result(image, part, fetch.mime, "url", skipped)

    def _result(
        self, image: _Image, part: _PartFile, mime: str, source: str, skipped: bool
    ) -> SavedImage:
        return SavedImage(
            path=part.final,
            bytes=part.size,
            sha256=part.sha256,
            mime_type=mime,
            source=source,
            url=image.url,
            index=image.index,
            request_id=image.request_id,
            skipped=skipped,
        )
