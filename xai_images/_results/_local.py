"""The local directory: the default `Output`, built on the part files of ``_files``.

`LocalDirectory` stores each image as ``<root>/<key>``: the bytes go to a part file beside the
final name (``.<name>.<random>.part``), hashed while written, and are renamed into place only
by `Upload.commit`, with the ``on_exists`` rule of `PartFile`. Writes are batched and run on
the client's `WriterPool`, off the event loop; a body that pauses is written in the background
after a short idle time, so received bytes never wait only in memory. Memory per upload is
bounded by the batch size plus one chunk.
"""

from __future__ import annotations

import asyncio
import os
import re
import stat
from pathlib import Path
from urllib.parse import quote

import attrs

from .._errors import SaveError, ValidationError
from .._readonly import ReadOnly
from ._files import OnExists, PartFile, WriterPool, hash_file, key_for, retrieve, save_error
from ._output import Stored

__all__ = ["BATCH_BYTES", "IDLE_FLUSH", "LocalDirectory"]

BATCH_BYTES = 1024 * 1024
"""Bytes an upload gathers before one worker-thread hop writes them (with ``writev``): an image
up to this size takes a single hop (open, write, close, rename), a larger one a hop per batch."""

IDLE_FLUSH = 0.25
"""Seconds a paused upload keeps received bytes only in memory before writing them."""

_SEPARATORS = frozenset(sep for sep in ("/", os.sep, os.altsep) if sep)
# One file name: no separator of any platform, no drive or stream colon, no NUL.
_PLAIN_KEY = re.compile(r"[^/\\:\x00]+")


def _key_error(key: object) -> ValidationError:
    return ValidationError("key", key, "a relative name inside the target (no '..', no root)")


class LocalDirectory:
    """A directory on this machine as an `Output`.

    Args:
        root: the directory (created on first write, or by `check_writable`).
        fsync: flush every file (and its directory) to disk before it is renamed into place.
        writers: the thread pool that writes the files (``None``: asyncio's default executor).
        batch: bytes gathered per write hop (at least ``BATCH_BYTES`` pays off).
        idle: seconds before bytes of a paused upload are written in the background.
    """

    __slots__ = ("_batch", "_fsync", "_idle", "_root", "_url", "_writers")

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        fsync: bool = False,
        writers: WriterPool | None = None,
        batch: int = BATCH_BYTES,
        idle: float = IDLE_FLUSH,
    ) -> None:
        self._root = Path(root)
        self._fsync = fsync
        self._writers = writers
        self._batch = batch
        self._idle = idle
        self._url: str | None = None

    def __repr__(self) -> str:
        return f"LocalDirectory({str(self._root)!r})"

    root: ReadOnly[Path] = ReadOnly("_root")
    """The directory, as given."""

    @property
    def url(self) -> str:
        """The directory as a ``file://`` URL (made absolute against the current directory)."""
        if self._url is None:
            self._url = self._root.absolute().as_uri()
        return self._url

    def key_for(self, stem: str, mime_type: str) -> str:
        """``stem`` made one safe file name, plus the extension of ``mime_type``."""
        return key_for(stem, mime_type)

    def path_for(self, key: str) -> Path:
        """The file that holds ``key``.

        Raises:
            ValidationError: ``key`` is empty, absolute, or has an empty, ``.`` or ``..`` part
                (it would name something outside the directory).
        """
        if type(key) is str and _PLAIN_KEY.fullmatch(key) and key not in (".", ".."):
            return self._root / key  # one name, nothing to split or check further
        if not isinstance(key, str) or not key or "\0" in key:
            raise _key_error(key)
        parts = [key]
        for sep in _SEPARATORS:
            parts = [piece for part in parts for piece in part.split(sep)]
        if any(part in ("", ".", "..") for part in parts) or Path(key).is_absolute():
            raise _key_error(key)
        if os.name == "nt" and any(":" in part for part in parts):  # drives, streams
            raise _key_error(key)
        return self._root.joinpath(*parts)

    def location(self, key: str) -> str:
        """The ``file://`` URL of ``key``."""
        base = self.url
        sep = "" if base.endswith("/") else "/"  # the file system root: file:///
        return f"{base}{sep}{quote(key.replace(os.sep, '/'))}"

    async def check_writable(self) -> None:
        """Create the directory if missing and check that files can be created in it.

        Raises:
            SaveError: it cannot be created, is not a directory, or is not writable.
        """
        await asyncio.to_thread(self._check_writable_sync)

    def _check_writable_sync(self) -> None:
        root = self._root
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise save_error(exc, root, None) from exc
        if not os.access(root, os.W_OK | os.X_OK):
            raise SaveError(f"cannot write {root}: permission denied", path=root)

    async def open(self, key: str, mime_type: str, *, on_exists: OnExists = "fail") -> LocalUpload:
        """Start the file ``key``: nothing is created until the first bytes are written."""
        final = self.path_for(key)
        part = PartFile(final, fsync=self._fsync, url=None, writers=self._writers)
        return LocalUpload(self, part, key, mime_type, on_exists)

    async def verify(self, key: str, *, size: int, sha256: str) -> bool:
        """Whether ``key`` is a regular file of ``size`` bytes with this ``sha256``.

        The size is checked first (one ``lstat``); the hash is computed in a worker thread. A
        symbolic link is never followed (it does not count as the image).

        Raises:
            SaveError: the file exists but cannot be read.
        """
        path = self.path_for(key)
        return await asyncio.to_thread(_verify_sync, path, size, sha256.lower())


def _verify_sync(path: Path, size: int, sha256: str) -> bool:
    try:
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode) or info.st_size != size:
            return False
        return hash_file(path) == (size, sha256)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise save_error(exc, path, None) from exc


@attrs.define(eq=False, repr=False)
class LocalUpload:
    """One image file being written to its part file (see `LocalDirectory`).

    Chunks are kept as handed in (not copied) until written: the caller must not change a
    buffer after passing it to `write`.
    """

    _output: LocalDirectory
    _part: PartFile
    _key: str
    _mime: str
    _on_exists: OnExists
    _pending: list[bytes | bytearray | memoryview] = attrs.field(factory=list, init=False)
    _pending_bytes: int = attrs.field(default=0, init=False)
    _timer: asyncio.TimerHandle | None = attrs.field(default=None, init=False)
    _background: asyncio.Future[bool] | None = attrs.field(default=None, init=False)

    def __repr__(self) -> str:
        return f"LocalUpload({str(self._part.final)!r}, written={self.size})"

    @property
    def size(self) -> int:
        """Bytes handed to `write` so far."""
        return self._part.size + self._pending_bytes

    async def write(self, chunk: bytes | bytearray | memoryview) -> None:
        """Append ``chunk``; writes the gathered bytes first when the batch would overflow."""
        length = memoryview(chunk).nbytes
        if not length:
            return
        if self._pending and self._pending_bytes + length > self._output._batch:
            self._cancel_timer()
            await self._settle()
            pieces, self._pending, self._pending_bytes = self._pending, [], 0
            await self._part.put(pieces)
        self._pending.append(chunk)
        self._pending_bytes += length
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._output._idle, self._flush_in_background)

    async def commit(self) -> Stored:
        """Write what is left, close the file and rename it into place (one worker hop).

        Raises:
            FileCollisionError: the name is taken and ``on_exists`` keeps the existing file.
            SaveError: the file system refused (the message names the path).
        """
        self._cancel_timer()
        await self._settle()
        last, self._pending, self._pending_bytes = self._pending, [], 0
        part = self._part
        skipped = await part.put(last, commit=self._on_exists)
        return Stored(
            location=self._output.location(self._key),
            key=self._key,
            size=part.size,
            sha256=part.sha256,
            mime_type=self._mime,
            path=part.final,
            skipped=skipped,
        )

    async def abort(self) -> None:
        """Remove the part file; idempotent, safe after a failed commit and when cancelled."""
        self._cancel_timer()
        self._pending, self._pending_bytes = [], 0
        background, self._background = self._background, None
        if background is not None:
            background.cancel()
            # Retrieved, so that asyncio does not log it; PartFile.abort waits for its thread.
            background.add_done_callback(retrieve)
        await self._part.abort()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _flush_in_background(self) -> None:
        self._timer = None
        if not self._pending or self._background is not None:
            return
        pieces, self._pending, self._pending_bytes = self._pending, [], 0
        self._background = asyncio.ensure_future(self._part.put(pieces))

    async def _settle(self) -> None:
        if self._background is not None:
            done, self._background = self._background, None
            await done
