"""Atomic image files: a part file beside the final name, renamed into place once complete.

Every image is written under a temporary name (``.<final name>.<random>.part``) in the target
directory and renamed only once complete and checked, so a failure at any point leaves no file
under the final name and no temporary file. Blocking calls run on the client's
`WriterPool` (a couple of threads, created on first use and shut down by
``AsyncClient.aclose()``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import functools
import hashlib
import itertools
import os
import re
import secrets
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

import attrs

from .._errors import FileCollisionError, SaveError, ValidationError
from ._output import OnExists
from ._sniff import IMAGE_EXTENSIONS, extension_for

__all__ = [
    "OnExists",
    "PartFile",
    "SavedImage",
    "WriterPool",
    "check_on_exists",
    "final_path",
    "hash_file",
    "key_for",
    "retrieve",
    "safe_component",
    "save_error",
]

_ON_EXISTS = ("fail", "overwrite", "skip")

_SUFFIX_MIME = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".jpe": "image/jpeg",
    ".webp": "image/webp",
}

# Block size for hashing existing files.
_SLICE = 1024 * 1024

_WRITEV: Callable[[int, list[memoryview]], int] | None = getattr(os, "writev", None)
try:
    _IOV_MAX = max(16, min(os.sysconf("SC_IOV_MAX"), 1024))
except (AttributeError, ValueError, OSError):
    _IOV_MAX = 16


_T = TypeVar("_T")


# Threads that write files (without fsync). Few on purpose: the work is short and mostly
# outside the GIL, and every extra thread adds GIL hand-offs with the event loop (the default
# executor's 6 threads cost about 8% of the throughput and CPU of saving 500 kB images).
_WRITERS = 2

# Every pool, so that a forked child can forget the parent's (threadless) executors.
_pools: weakref.WeakSet[WriterPool] = weakref.WeakSet()


class WriterPool:
    """The threads that write one client's files: started by `start` (or on first use),
    shut down by the client.

    After `shutdown` (the client was closed) writes still work, on asyncio's default
    executor, so that images already in hand (``b64_json``) can be saved after the client closed.
    """

    def __init__(self, workers: int = _WRITERS) -> None:
        self._workers = workers
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._closed = False
        self._started = False
        # Event loops in several threads may share one client's pool.
        self._lock = threading.Lock()
        _pools.add(self)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "started" if self._executor else "idle"
        return f"<WriterPool workers={self._workers} {state}>"

    def executor(self) -> concurrent.futures.ThreadPoolExecutor | None:
        """The executor, started on first use; ``None`` once shut down."""
        executor = self._executor
        if executor is None and not self._closed:
            with self._lock:
                if self._executor is None and not self._closed:
                    self._executor = concurrent.futures.ThreadPoolExecutor(
                        self._workers, thread_name_prefix="xai-images"
                    )
                executor = self._executor
        return executor

    def start(self) -> None:
        """Start every writer thread now (idempotent): starting a thread waits until it runs,
        which on a busy machine can hold the event loop for milliseconds, so a client does it
        when it opens rather than inside its first save."""
        if self._started:
            return
        executor = self.executor()
        if executor is None:
            return
        with self._lock:
            if self._started:
                return
            self._started = True
        # The executor adds a thread per task while none is idle: tasks that wait for each
        # other make it start all of them.
        barrier = threading.Barrier(self._workers)
        for _ in range(self._workers):
            executor.submit(_meet, barrier)

    def shutdown(self) -> None:
        """Stop the threads once the writes already queued are done; idempotent, non-blocking."""
        self._closed = True
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)

    def _after_fork(self) -> None:
        # A forked child has none of the parent's threads: start a new executor on first use
        # (and a new lock, in case another thread held it at the fork).
        self._executor = None
        self._started = False
        self._lock = threading.Lock()


def _meet(barrier: threading.Barrier) -> None:
    with contextlib.suppress(threading.BrokenBarrierError):
        barrier.wait(timeout=5)


def _forget_executors() -> None:
    for pool in list(_pools):
        pool._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_executors)


# A final name may be up to 255 bytes; the temporary one adds 15 characters around it.
_TMP_NAME_KEEP = 200


# Part-file names: a random prefix drawn once per process (again in a forked child) and a
# counter, so that naming a part file costs no system call; O_EXCL still refuses any name that
# exists, and a retry after a clash draws a fresh random tag.
_part_prefix = secrets.token_hex(4)
_part_counter = itertools.count()


def _new_part_prefix() -> None:
    global _part_prefix, _part_counter
    _part_prefix = secrets.token_hex(4)
    _part_counter = itertools.count()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_part_prefix)


def _part_tag(attempt: int) -> str:
    if attempt:
        return secrets.token_hex(4)
    return f"{_part_prefix}{next(_part_counter):x}"


@attrs.frozen
class SavedImage:
    """What was written for one image.

    Attributes:
        path: the final path (its extension comes from the image bytes), for a local
            directory target; ``None`` for a target that is not a local directory.
        bytes: the file size.
        sha256: hex SHA-256 of the file, computed while writing.
        mime_type: the sniffed type: ``image/png``, ``image/jpeg`` or ``image/webp``.
        source: ``"url"`` (downloaded) or ``"b64_json"`` (decoded from the answer).
        url: the image URL, for ``"url"`` images.
        index: the image's position in its answer.
        request_id: the API request id of the answer.
        skipped: ``True`` when an identical file was already there (``on_exists="skip"``) and
            nothing was written.
        location: where the image is stored, as a URL (``file:///...`` for a local file).
        key: the image's name relative to its target (``<stem>.<ext>`` for a directory).
    """

    # Typed Path while the bulk engine still reads it as one; None at run time only for
    # targets that are not local directories (a custom Output, an object store).
    path: Path
    bytes: int
    sha256: str
    mime_type: str
    source: str
    url: str | None
    index: int
    request_id: str | None
    skipped: bool = False
    location: str | None = None
    key: str | None = None

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        from ._preview import file_bundle  # display code is loaded at the first display

        return file_bundle(self, self.path, self.location or "")


def check_on_exists(on_exists: str) -> None:
    if on_exists not in _ON_EXISTS:
        raise ValidationError("on_exists", on_exists, "one of 'fail', 'overwrite', 'skip'")


def save_error(exc: OSError, path: Path, url: str | None) -> SaveError:
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        reason += " (disk full)"
    return SaveError(f"cannot write {path}: {reason}", path=path, url=url)


# Room for an extension (".jpeg") and the temporary-file decoration within NAME_MAX (255 bytes).
_MAX_STEM_BYTES = 180
# Names Windows gives to devices, in any case and with any extension.
_RESERVED = frozenset(
    ["con", "prn", "aux", "nul"] + [f"{d}{n}" for d in ("com", "lpt") for n in range(1, 10)]
)
# Path separators of every platform (a name saved on Linux may be copied to Windows), the
# drive/stream colon, NUL and the other characters Windows refuses in names.
# One pass of C code over the name, instead of a Python test per character.
_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]')
# A name every rule below leaves unchanged (ASCII letters, digits, "-", "_", inner dots; no
# leading dot, no trailing dot): returned after one match, which is nearly every server id.
_PLAIN = re.compile(rf"[A-Za-z0-9_-](?:[A-Za-z0-9._-]{{0,{_MAX_STEM_BYTES - 2}}}[A-Za-z0-9_-])?")


def safe_component(text: str, *, fallback: str = "image") -> str:
    """``text`` (e.g. a server's request id) as one harmless file name component.

    The one rule for every name built from values a server controls: the result is never
    empty, ``.`` or ``..``, never starts with a dot, holds no separator (``/`` or ``\\``), drive
    colon, NUL or other control character, is no Windows device name, and fits in
    ``_MAX_STEM_BYTES`` bytes of UTF-8 (a long one is cut and given a hash of the whole, so two
    long ids stay distinct). Ordinary names (``3f2a-0``) come back unchanged.
    """
    if _PLAIN.fullmatch(text) and text.split(".", 1)[0].lower() not in _RESERVED:
        return text
    original = text.encode("utf-8", "surrogatepass")
    # Lone surrogates cannot be file names: they become "?", then "_" below.
    text = text.encode("utf-8", "replace").decode("utf-8")
    cleaned = _UNSAFE.sub("_", text)
    # No hidden files, no "." / "..", no trailing dots or spaces (Windows drops them).
    stripped = cleaned.lstrip(".")
    cleaned = "_" * (len(cleaned) - len(stripped)) + stripped
    cleaned = cleaned.rstrip(". ") or fallback
    if cleaned.split(".")[0].strip().lower() in _RESERVED:
        cleaned = "_" + cleaned
    encoded = cleaned.encode("utf-8")
    if len(encoded) > _MAX_STEM_BYTES:
        digest = hashlib.sha256(original).hexdigest()[:12]
        head = encoded[: _MAX_STEM_BYTES - 13].decode("utf-8", "ignore")
        cleaned = f"{head}-{digest}"
    return cleaned


def key_for(stem: str, mime: str) -> str:
    """The file name of an image named ``stem`` holding ``mime`` bytes: ``stem`` made safe by
    `safe_component`, plus the extension of the sniffed type (the one naming rule of every
    output target)."""
    return safe_component(stem) + extension_for(mime)


def final_path(target: Path, is_dir: bool, stem: str, mime: str) -> Path:
    """The file to write: ``target/`` `key_for` ``(stem, mime)`` for a directory, else
    ``target`` with its suffix corrected to the sniffed type (added when missing or not an
    image suffix)."""
    if is_dir:
        return target / key_for(stem, mime)
    ext = extension_for(mime)
    suffix = target.suffix.lower()
    if _SUFFIX_MIME.get(suffix) == mime:
        return target
    if suffix in IMAGE_EXTENSIONS:
        return target.with_suffix(ext)
    return target.with_name(target.name + ext)


def hash_file(path: Path) -> tuple[int, str]:
    """The size and hex SHA-256 of the file at ``path``, read in 1 MiB blocks (blocking)."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while block := handle.read(_SLICE):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


# A hop in flight: an asyncio future (default executor) or a writer pool's own future.
_Hop: TypeAlias = "asyncio.Future[Any] | concurrent.futures.Future[Any]"


def _deliver_threadsafe(
    loop: asyncio.AbstractEventLoop, done: asyncio.Future[Any], work: concurrent.futures.Future[Any]
) -> None:
    """In the writer thread, when ``work`` ended: hand its outcome to ``done`` on ``loop``."""
    if not loop.is_closed():
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(_deliver, done, work)


def _deliver(done: asyncio.Future[Any], work: concurrent.futures.Future[Any]) -> None:
    if done.done():  # the caller was cancelled; `abort` waits for the work itself
        return
    if work.cancelled():
        done.cancel()
        return
    error = work.exception()
    if error is None:
        done.set_result(work.result())
    else:
        done.set_exception(error)


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


class PartFile:
    """A temporary file beside the final one, renamed into place only when complete.

    Blocking calls run in a worker thread, as few as possible: `put` opens the file when
    needed, appends and commits in a single hop (one hop per image when it fits in memory), as
    every hop costs CPU and makes the worker compete with the event loop for the GIL. If the
    caller is cancelled while a hop is in flight, the hop does not commit, and `abort`
    waits for it before closing the descriptor, so a thread never writes into a reused
    descriptor number.
    """

    def __init__(
        self, final: Path, *, fsync: bool, url: str | None, writers: WriterPool | None = None
    ) -> None:
        self.final = final
        self.url = url
        self._fsync = fsync
        self._writers = writers
        self.tmp: str | None = None
        self._fd: int | None = None
        self._digest = hashlib.sha256()
        self.size = 0
        self._inflight: _Hop | None = None
        self._abandoned = False  # read by the worker thread before it commits

    @property
    def opened(self) -> bool:
        """Whether the temporary file exists (a hop has created it)."""
        return self._fd is not None

    async def _run(self, func: Callable[..., _T], *args: Any) -> _T:
        executor = None
        if not self._fsync and self._writers is not None:
            executor = self._writers.executor()
        try:
            if executor is None:
                # fsync waits on the disk: many may be in flight at once (and without a pool
                # of its own the part file uses asyncio's default executor).
                future = asyncio.ensure_future(asyncio.to_thread(func, *args))
                self._inflight = future
                return await asyncio.shield(future)
            # The pool's hop, once per image: the thread's own future is what `abort` waits
            # for, and the loop hears of its end through one callback into a plain future, a
            # cancellation of which leaves the thread's work alone (what run_in_executor plus
            # shield did, with three callbacks where this needs one).
            loop = asyncio.get_running_loop()
            done: asyncio.Future[_T] = loop.create_future()
            work = executor.submit(func, *args)
            self._inflight = work
            work.add_done_callback(functools.partial(_deliver_threadsafe, loop, done))
            return await done
        except asyncio.CancelledError:
            self._abandoned = True
            raise
        except OSError as exc:
            raise save_error(exc, self.final, self.url) from exc

    async def put(
        self, pieces: list[bytes | bytearray | memoryview], *, commit: str | None = None
    ) -> bool:
        """Append ``pieces`` (opening the file first if needed) and hash them, in one hop.

        With ``commit`` (an `OnExists` policy) the file is then closed and renamed into
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
        # Plain strings: pathlib objects cost the writer thread GIL time for nothing here.
        folder, name = os.path.split(self.final)
        # Keep the temporary name within the 255-byte limit a valid final name may reach.
        stem = name[:_TMP_NAME_KEEP]
        for _ in range(10):
            tmp = os.path.join(folder, f".{stem}.{_part_tag(_)}.part")
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
            identical = hash_file(self.final) == (self.size, self.sha256)
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

    def _discard_when_done(self, future: _Hop) -> None:
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
                if isinstance(inflight, concurrent.futures.Future):
                    await asyncio.shield(asyncio.wrap_future(inflight))
                else:
                    await asyncio.shield(inflight)
            except BaseException:  # cleanup below must run whatever happened
                if not inflight.done():
                    inflight.add_done_callback(self._discard_when_done)
                    return
        self._discard_sync()
