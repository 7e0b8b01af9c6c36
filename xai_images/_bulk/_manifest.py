"""The JSONL manifest of a bulk job: one record per finished item, crash-safe, loadable to resume.

Each finished item appends one JSON line, written and flushed at once (and ``fsync``-ed every
few lines and on close), so a crash loses at most the line being written. On load, a final line
without its newline (a crash mid-line) is ignored, and a later line for the same id overrides an
earlier one, so re-running a job only ever appends.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Literal

import attrs

from .._results._safefs import open_append, open_read

__all__ = [
    "RUN_RECORD_KEY",
    "FileRecord",
    "ItemStatus",
    "ManifestRecord",
    "ManifestWriter",
    "PendingImage",
    "file_sha256",
    "load_manifest",
    "parse_line",
    "read_manifest",
]

logger = logging.getLogger("xai_images")

ItemStatus = Literal["ok", "failed", "blocked", "unknown", "expired"]
"""Outcome of an item: ``ok`` saved, ``failed`` (safe to retry), ``blocked`` by moderation,
``unknown`` (sent but the answer was lost: maybe billed, never resent unless asked),
``expired`` (generated and billed through the Batch API, but its image URLs expired before
they could be saved; generated again only when asked)."""

RUN_RECORD_KEY = "record"
"""Lines with this key are a job's own bookkeeping (the Batch API path writes its run id, batch
id and added items this way), not item records: :func:`read_manifest` skips them."""

_FSYNC_EVERY = 32
# Everything parsing one line can raise: bad JSON or UTF-8 (ValueError), nesting deeper than the
# parser's recursion limit (RecursionError), a number too big for int() or float() (ValueError,
# OverflowError), a value of the wrong shape (TypeError, KeyError).
_UNREADABLE = (ValueError, TypeError, KeyError, RecursionError, OverflowError)


@attrs.frozen
class FileRecord:
    """One saved image of an item.

    Attributes:
        path: the file's path relative to the output directory (POSIX separators).
        bytes: its size.
        sha256: hex digest of its content.
        mime_type: the sniffed type, e.g. ``"image/png"``.
        revised_prompt: the prompt the model actually used, when the API returned one.
        spilled_to: for a job into an object store, the local file holding this image when it
            was paid for but could not be stored (``path`` is then the key it was meant for).
        etag: the store's entity tag of an image xAI uploaded through a signed URL (its
            ``sha256`` is then empty: the bytes never passed through this client).
    """

    path: str
    bytes: int
    sha256: str
    mime_type: str | None = None
    revised_prompt: str | None = None
    spilled_to: str | None = None
    etag: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON-ready dict (``None`` fields left out)."""
        return {k: v for k, v in attrs.asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FileRecord:
        """Build from a dict read from a manifest line (unknown keys are ignored)."""
        fields = {"path": str, "bytes": int, "sha256": str}
        return cls(**_read(data, fields, ("mime_type", "revised_prompt", "spilled_to", "etag")))


@attrs.frozen
class PendingImage:
    """An image that was generated (and billed) but not saved yet: kept to download it later.

    Attributes:
        index: the image's position in the API answer.
        url: its temporary URL (``None`` for a base64 image, which cannot be fetched again).
        revised_prompt: the prompt the model actually used, when the API returned one.
    """

    index: int
    url: str | None
    revised_prompt: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON-ready dict."""
        return {"index": self.index, "url": self.url, "revised_prompt": self.revised_prompt}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PendingImage:
        """Build from a dict read from a manifest line (unknown keys are ignored)."""
        return cls(**_read(data, {"index": int}, ("url", "revised_prompt")))


@attrs.frozen
class ManifestRecord:
    """The manifest line of one finished item.

    Attributes:
        id: the item's id (given, or derived from the request's content).
        kind: ``"generate"`` or ``"edit"``.
        request: the request's fields as given (edit inputs by reference, never their bytes).
        status: see `ItemStatus`.
        files: the saved images.
        request_id: the API's ``x-request-id`` of the successful answer, when known.
        attempts: how many times the item's API request was sent (0 if never).
        cost_in_usd_ticks: what the API reported for the item (1 USD = 10**10 ticks).
        error: the error message, for items not ``ok``.
        error_type: the exception class name, e.g. ``"RateLimitError"``.
        billed: whether the API accepted the request and charged for it, so that generating
            again pays again: set when it answered with images (even when saving them failed
            afterwards), and for a ``blocked`` item when the API reported a cost for it.
        pending: images of a billed item that were not saved (download or write failed), so a
            retry downloads them instead of generating (and paying) again while their URLs
            are still valid.
        line: the item's line number in the JSONL job file, when it came from one.
        model: the model the API reported, or the one requested.
        finished_at: Unix time when the item finished.
    """

    id: str
    kind: str
    request: Mapping[str, Any]
    status: str
    files: tuple[FileRecord, ...] = ()
    request_id: str | None = None
    attempts: int = 0
    cost_in_usd_ticks: int | None = None
    error: str | None = None
    error_type: str | None = None
    billed: bool = False
    pending: tuple[PendingImage, ...] = ()
    line: int | None = None
    model: str | None = None
    finished_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON-ready dict."""
        out: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "request": dict(self.request),
            "files": [f.to_json() for f in self.files],
            "request_id": self.request_id,
            "attempts": self.attempts,
            "cost_in_usd_ticks": self.cost_in_usd_ticks,
            "error": self.error,
            "error_type": self.error_type,
            "billed": self.billed,
        }
        if self.pending:
            out["pending"] = [p.to_json() for p in self.pending]
        if self.line is not None:
            out["line"] = self.line
        if self.model is not None:
            out["model"] = self.model
        if self.finished_at is not None:
            out["finished_at"] = round(self.finished_at, 3)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ManifestRecord:
        """Build from a dict read from a manifest line (unknown keys are ignored).

        Raises:
            KeyError, TypeError, ValueError: the dict is not a manifest record.
        """
        request = data.get("request") or {}
        if not isinstance(request, Mapping):
            raise TypeError("request is not an object")
        cost = data.get("cost_in_usd_ticks")
        line = data.get("line")
        finished = data.get("finished_at")
        return cls(
            id=str(data["id"]),
            kind=str(data.get("kind", "generate")),
            request=dict(request),
            status=str(data["status"]),
            files=tuple(FileRecord.from_json(f) for f in data.get("files") or ()),
            request_id=_opt_str(data.get("request_id")),
            attempts=int(data.get("attempts") or 0),
            cost_in_usd_ticks=None if cost is None else int(cost),
            error=_opt_str(data.get("error")),
            error_type=_opt_str(data.get("error_type")),
            billed=bool(data.get("billed", False)),
            pending=tuple(PendingImage.from_json(p) for p in data.get("pending") or ()),
            line=None if line is None else int(line),
            model=_opt_str(data.get("model")),
            finished_at=None if finished is None else float(finished),
        )

    def files_intact(
        self, directory: str | os.PathLike[str], *, check_sha256: bool = False
    ) -> bool:
        """Whether every recorded file exists in ``directory`` with the recorded size.

        With ``check_sha256`` the content is hashed too (reads every file).
        """
        if not self.files:
            return False
        base = Path(directory)
        for f in self.files:
            path = base / f.path
            try:
                if path.stat().st_size != f.bytes:
                    return False
            except OSError:
                return False
            if check_sha256 and file_sha256(path) != f.sha256:
                return False
        return True


def _read(
    data: Mapping[str, Any], required: Mapping[str, Callable[[Any], Any]], optional: Sequence[str]
) -> dict[str, Any]:
    """The keyword arguments of a record: ``required`` keys converted, ``optional`` ones as
    strings or ``None``."""
    _require_mapping(data)
    values = {key: convert(data[key]) for key, convert in required.items()}
    return values | {key: _opt_str(data.get(key)) for key in optional}


def parse_line(raw: bytes) -> dict[str, Any]:
    """One manifest line as a JSON object.

    Raises:
        ValueError, TypeError, RecursionError: the line is not a JSON object (all caught by
            ``except _UNREADABLE``).
    """
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise TypeError("not an object")
    return data


def _require_mapping(data: object) -> None:
    if not isinstance(data, Mapping):
        raise TypeError(f"expected an object, got {type(data).__name__}")


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's content, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(path: str | os.PathLike[str]) -> Iterator[ManifestRecord]:
    """Yield every readable record of a manifest in file order.

    A final line without its newline (the process died while writing it) is ignored silently;
    any other unreadable line (not JSON, not UTF-8, nested too deep, numbers out of range, not a
    record) is skipped with a warning on the ``xai_images`` logger. A missing file yields nothing.

    Raises:
        SaveError: the manifest path is a symbolic link or not a regular file.
        OSError: it cannot be read.
    """
    try:
        fh = open_read(path, what="manifest")
    except FileNotFoundError:
        return
    with fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.endswith(b"\n"):
                # Only the last line can lack its newline: the write was cut short.
                logger.debug("manifest %s: ignoring partial last line %d", path, number)
                return
            if not raw.strip():
                continue
            try:
                data = parse_line(raw)
                if RUN_RECORD_KEY in data:
                    continue
                yield ManifestRecord.from_json(data)
            except _UNREADABLE as exc:
                logger.warning("manifest %s: skipping unreadable line %d: %s", path, number, exc)


def load_manifest(path: str | os.PathLike[str]) -> dict[str, ManifestRecord]:
    """Load a manifest for resuming: the latest record of each id (later lines win)."""
    return {record.id: record for record in read_manifest(path)}


class ManifestWriter:
    """Appends records to a manifest file, one flushed line per record, writes off the loop.

    Opening truncates a partial last line left by a crash, so new lines start clean. Use as an
    async context manager, or call `open` and `aclose`.

    Args:
        path: the manifest file; its directory is created if missing.
        fsync_every: ``os.fsync`` after this many lines (and always on close).

    Raises:
        SaveError: (on open) the path is a symbolic link or not a regular file: the writer never
            writes through a link planted at the manifest's name.
        OSError: the file cannot be opened or written.
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync_every: int = _FSYNC_EVERY) -> None:
        self.path = Path(path)
        self._fsync_every = max(1, fsync_every)
        self._fh: IO[bytes] | None = None
        self._unsynced = 0
        self._lock = asyncio.Lock()
        self.written = 0

    def __repr__(self) -> str:
        return f"ManifestWriter({str(self.path)!r}, written={self.written})"

    async def __aenter__(self) -> ManifestWriter:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def open(self) -> None:
        """Open the file for appending (idempotent)."""
        if self._fh is None:
            self._fh = await asyncio.to_thread(self._open_sync)

    def _open_sync(self) -> IO[bytes]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open_append(self.path, what="manifest")
        try:
            size = fh.seek(0, os.SEEK_END)
            if size:
                fh.seek(max(0, size - 1))
                if fh.read(1) != b"\n":
                    _truncate_partial_line(fh, size)
        except BaseException:
            fh.close()
            raise
        return fh

    async def write(self, record: ManifestRecord) -> None:
        """Append one record as a single line, flushed before returning."""
        data = _encode_line(record.to_json())
        async with self._lock:
            if self._fh is None:
                await self.open()
            await asyncio.to_thread(self._write_sync, data)
            self.written += 1

    async def write_json(self, data: Mapping[str, Any], *, sync: bool = False) -> None:
        """Append one JSON object as a line (a run record); ``sync``: ``fsync`` before returning."""
        line = json.dumps(dict(data), ensure_ascii=False, separators=(",", ":")) + "\n"
        async with self._lock:
            if self._fh is None:
                await self.open()
            await asyncio.to_thread(self._write_sync, line.encode("utf-8"), sync)

    def _write_sync(self, data: bytes, sync: bool = False) -> None:
        fh = self._fh
        assert fh is not None
        fh.write(data)
        fh.flush()
        self._unsynced += 1
        if sync or self._unsynced >= self._fsync_every:
            os.fsync(fh.fileno())
            self._unsynced = 0

    async def aclose(self) -> None:
        """Flush, ``fsync`` and close the file (idempotent)."""
        async with self._lock:
            fh, self._fh = self._fh, None
            if fh is not None:
                await asyncio.to_thread(_close_sync, fh)

    def close_sync(self) -> None:
        """Close without the event loop (for finalisation paths where awaiting is impossible)."""
        fh, self._fh = self._fh, None
        if fh is not None:
            _close_sync(fh)


def _encode_line(record: Mapping[str, Any]) -> bytes:
    line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
    try:
        return line.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (from a server's error message, say) has no UTF-8 form; as a \\u
        # escape it is valid JSON and reads back as the same string.
        return (json.dumps(record, separators=(",", ":")) + "\n").encode("ascii")


def _truncate_partial_line(fh: IO[bytes], size: int) -> None:
    # Scan back for the last newline in chunks; everything after it is a torn write.
    pos = size
    while pos > 0:
        start = max(0, pos - 65536)
        fh.seek(start)
        chunk = fh.read(pos - start)
        idx = chunk.rfind(b"\n")
        if idx >= 0:
            fh.truncate(start + idx + 1)
            return
        pos = start
    fh.truncate(0)


def _close_sync(fh: IO[bytes]) -> None:
    try:
        fh.flush()
        os.fsync(fh.fileno())
    finally:
        fh.close()
