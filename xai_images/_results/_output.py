"""The output seam: where an image's bytes end up.

Every path that stores an image (``image.save``, ``response.save``, ``save_all``, both bulk
sources, the resume check, the gallery) goes through an `Output`. The local directory is the
default implementation; object stores implement the same protocol.

The contract, for every implementation:

- A target is named by URL (`Output.url`): ``file:///abs/dir``, ``s3://bucket/prefix``,
  ``gs://...``, ``az://...``, ``memory://...``.
- Keys are relative names made by `Output.key_for` from a stem and the sniffed mime type, with
  the package's one safe-name rule: a key never escapes the target.
- `Output.open` starts one object and returns an `Upload`. Bytes are streamed into it chunk by
  chunk (memory bounded by the chunk size, never the image size). Nothing is visible under the
  final key until `Upload.commit` returns; `Upload.abort` (also on cancellation) leaves no
  partial object and no orphaned parts. `commit` returns a `Stored` record with the size and
  sha256 computed while writing.
- `Output.verify` tells whether a key already holds an intact object of a given size and sha256
  without needing a local copy: the resume rule uses it, so an image that is already stored
  intact is never paid for again.
- `Output.check_writable` is called before anything is billed; a target that cannot be written
  (missing or unwritable directory, no credentials, no bucket, access denied) raises a typed
  error naming the target.

Additions since the first version of this contract (nothing renamed): both protocols are
``runtime_checkable``, so that ``output_for`` can tell an `Output` from a path; `Upload.write`
may keep the chunk until it is flushed (the caller does not reuse the buffer). `Output.open`
may fail with `ValidationError` for a key that would leave the target.
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import attrs

__all__ = ["OnExists", "Output", "Stored", "Upload", "write_object"]

OnExists = Literal["fail", "overwrite", "skip"]
"""What to do when the final file name is taken.

- ``"fail"``: raise `FileCollisionError` (even when the existing file is identical).
- ``"overwrite"``: replace it atomically.
- ``"skip"``: keep an identical existing file and report ``SavedImage.skipped = True``; a
  different existing file still raises `FileCollisionError` (nothing is lost silently).
"""


@attrs.frozen
class Stored:
    """One committed object.

    Attributes:
        location: the object's URL (``file:///...`` for a local file, ``s3://bucket/key``, ...).
        key: the object's name relative to its target.
        size: bytes stored.
        sha256: hex SHA-256 of the bytes, computed while writing.
        mime_type: the sniffed type of the bytes.
        path: the local file, for a local directory target; ``None`` elsewhere.
        etag: the store's entity tag, where it has one.
        skipped: ``True`` when an identical object was already there and nothing was written.
    """

    location: str
    key: str
    size: int
    sha256: str
    mime_type: str
    path: Path | None = None
    etag: str | None = None
    skipped: bool = False


@runtime_checkable
class Upload(Protocol):
    """One object being written: invisible until committed."""

    async def write(self, chunk: bytes | bytearray | memoryview) -> None:
        """Append ``chunk``; may wait for earlier chunks to be flushed (back-pressure).

        The upload may keep a reference to ``chunk`` until it is flushed: the caller does not
        change a buffer after handing it over."""

    async def commit(self) -> Stored:
        """Make the object visible under its final key, complete, and say what was stored."""

    async def abort(self) -> None:
        """Discard everything written so far. Idempotent; safe after a failed commit."""


@runtime_checkable
class Output(Protocol):
    """A place images are stored: a local directory, a bucket prefix, ..."""

    @property
    def url(self) -> str:
        """The target named by URL."""

    def key_for(self, stem: str, mime_type: str) -> str:
        """The safe key for an image named ``stem`` whose bytes are of ``mime_type``."""

    async def check_writable(self) -> None:
        """Raise a typed error naming the target if it cannot be written. Sends no request to
        the image API; may touch the target itself."""

    async def open(self, key: str, mime_type: str, *, on_exists: OnExists = "fail") -> Upload:
        """Start writing the object ``key``."""

    async def verify(self, key: str, *, size: int, sha256: str) -> bool:
        """Whether ``key`` holds an intact object of ``size`` bytes and this ``sha256``."""


async def write_object(
    output: Output,
    key: str,
    mime_type: str,
    content: bytes | bytearray | memoryview | AsyncIterable[bytes],
    *,
    on_exists: OnExists = "fail",
) -> Stored:
    """Store ``content`` (the bytes, or chunks as they come) as ``key`` in ``output``: all of
    it committed, or, on any failure or cancellation, nothing visible (the upload is aborted).
    """
    upload = await output.open(key, mime_type, on_exists=on_exists)
    try:
        if isinstance(content, (bytes, bytearray, memoryview)):
            await upload.write(content)
        else:
            async for chunk in content:
                await upload.write(chunk)
        return await upload.commit()
    except BaseException:
        await upload.abort()
        raise
