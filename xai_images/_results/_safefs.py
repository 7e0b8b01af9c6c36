"""The one rule for files the SDK keeps beside the images (manifest, gallery): no link following.

Someone who can create files in an output directory could plant a symbolic link named
``manifest.jsonl`` or ``index.html`` (or the name of a temporary file) pointing at a file
elsewhere; a plain ``open(path, "w")`` would then truncate or overwrite that file. So:

- an existing file is opened with ``O_NOFOLLOW`` and must be a regular file
  (`open_append`, `open_read`), else `SaveError` naming the path;
- a file that is rewritten whole is written to a temporary file created exclusively
  (``O_CREAT | O_EXCL | O_NOFOLLOW``) under a random name in the same directory, then moved over
  the final name with ``os.replace`` (`atomic_write`), which replaces a link planted there
  instead of writing through it.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path
from typing import IO

from .._errors import SaveError

__all__ = ["atomic_write", "open_append", "open_read"]

# O_NOFOLLOW is missing on Windows, where creating symbolic links needs privileges anyway; there
# the lstat() check before opening is the guard.
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_BINARY = getattr(os, "O_BINARY", 0)
# A FIFO planted at the name must not block the open; O_NONBLOCK does nothing to regular files.
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


def _read_umask() -> int:
    # The umask can only be read by setting it; done once, at import, not in worker threads.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def _refuse_link(path: Path, what: str) -> None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise SaveError(f"cannot open the {what} {path}: {exc.strerror or exc}", path=path) from exc
    if stat.S_ISLNK(info.st_mode):
        raise SaveError(
            f"refusing to open the {what} {path}: it is a symbolic link (remove it, or choose "
            "another path)",
            path=path,
        )


def _open_fd(path: Path, flags: int, what: str) -> int:
    _refuse_link(path, what)
    try:
        fd = os.open(path, flags | _NOFOLLOW | _CLOEXEC | _BINARY | _NONBLOCK, 0o644)
    except OSError as exc:
        # ELOOP: a link appeared between the lstat() and the open().
        if _NOFOLLOW and os.path.islink(path):
            raise SaveError(
                f"refusing to open the {what} {path}: it is a symbolic link", path=path
            ) from exc
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SaveError(f"refusing to open the {what} {path}: not a regular file", path=path)
        if _NONBLOCK:
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_append(path: str | os.PathLike[str], *, what: str = "file") -> IO[bytes]:
    """Open ``path`` for reading and appending (created if missing), never through a link.

    Args:
        what: how errors name the file, e.g. ``"manifest"``.

    Raises:
        SaveError: ``path`` is a symbolic link or not a regular file.
        OSError: it cannot be opened otherwise.
    """
    target = Path(path)
    fd = _open_fd(target, os.O_RDWR | os.O_APPEND | os.O_CREAT, what)
    return os.fdopen(fd, "a+b")


def open_read(path: str | os.PathLike[str], *, what: str = "file") -> IO[bytes]:
    """Open an existing ``path`` for reading, never through a link.

    Raises:
        FileNotFoundError: there is no file.
        SaveError: ``path`` is a symbolic link or not a regular file (a FIFO or a device could
            block or never end).
        OSError: it cannot be opened otherwise.
    """
    target = Path(path)
    fd = _open_fd(target, os.O_RDONLY, what)
    return os.fdopen(fd, "rb")


def atomic_write(path: str | os.PathLike[str], data: bytes) -> Path:
    """Replace ``path`` with ``data`` atomically: readers see the old file or the new one.

    The data goes to a temporary file created exclusively under a random name beside ``path``
    (``tempfile.mkstemp`` opens with ``O_CREAT | O_EXCL | O_NOFOLLOW``), is flushed to disk, then
    renamed over ``path``. A symbolic link at ``path`` is replaced by the file, never written
    through; the file it pointed at is untouched.

    Raises:
        SaveError: the file cannot be written (the temporary file is removed).
    """
    target = Path(path)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise SaveError(f"cannot write {target}: {exc.strerror or exc}", path=target) from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates 0600; the page and the manifest are as readable as the images.
        os.chmod(tmp_name, 0o666 & ~_UMASK)
        os.replace(tmp_name, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise SaveError(f"cannot write {target}: {exc.strerror or exc}", path=target) from exc
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    return target
