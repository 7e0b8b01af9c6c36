"""Object-store targets: the `Output` seam over obstore (S3, GCS, Azure, local, in memory).

An image of up to ``chunk_size`` bytes (the common case) is buffered, hashed while it arrives
and sent in one atomic PUT that carries its SHA-256 as object metadata (``sha256``). A larger
one switches to a streamed multipart upload, ``chunk_size`` bytes at a time; obstore completes
it atomically, and if it fails or is aborted the upload is aborted (the part stream ends with an
error, so obstore aborts the multipart upload: no orphaned parts). Such an object carries no
``sha256`` metadata (it is only known once the last byte went out), so `verify` reads it back.

obstore is an optional dependency (``pip install 'xai-images[storage]'``), imported on first
use. Store errors become `StoreError` / `StoreUnavailableError` with a short reason; neither a
credential nor a signed URL is ever put in a message or a repr.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import re
import secrets
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .._errors import (
    FileCollisionError,
    StoreError,
    StoreUnavailableError,
    ValidationError,
)
from ._files import safe_component
from ._output import OnExists, Stored
from ._sniff import extension_for

if TYPE_CHECKING:
    from obstore.store import ObjectStore

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "SHA256_METADATA",
    "STORE_SCHEMES",
    "StoreOutput",
    "StoreUpload",
    "is_store_url",
    "shown_target",
    "store_output",
]

STORE_SCHEMES = frozenset({"s3", "s3a", "gs", "az", "azure", "abfs", "abfss", "memory"})
"""URL schemes that name an object store (``file://`` names a local directory; a `StoreOutput`
built directly may also use it)."""

_AZURE_SCHEMES = frozenset({"az", "azure", "abfs", "abfss"})

DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024
"""Bytes buffered per image before switching to a multipart upload (also the part size)."""

# S3 refuses parts under 5 MiB (except the last one).
_MIN_CHUNK_SIZE = 5 * 1024 * 1024

SHA256_METADATA = "sha256"
"""The user-metadata key holding an object's hex SHA-256 (``x-amz-meta-sha256`` on S3)."""

# Chunks at least this big are hashed in a thread (hashlib releases the GIL), smaller ones on
# the event loop (a 256 kB chunk hashes in well under a millisecond).
_HASH_IN_THREAD = 256 * 1024

_INSTALL_HINT = "install the storage extra: pip install 'xai-images[storage]'"

# In-memory stores by name (``memory://name``), so that a test can write and read back.
_MEMORY_STORES: dict[str, ObjectStore] = {}


def is_store_url(target: object) -> bool:
    """Whether ``target`` is a string naming an object-store target (``s3://...``)."""
    if not isinstance(target, str) or "://" not in target:
        return False
    return target.split("://", 1)[0].lower() in STORE_SCHEMES


def _import_obstore() -> Any:
    try:
        import obstore
    except ImportError:
        return None
    return obstore


def shown_target(url: str) -> str:
    """``url`` as errors and logs may show it: no user info, query or fragment (where signed
    URLs and inline credentials live)."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}"


# URLs in a store's error text may be signed: keep only scheme, host and path.
_URL_RE = re.compile(r"(https?://[^\s?#\"'<>]*)[?#][^\s\"'<>]*")


def _reason(exc: BaseException) -> str:
    """A short, secret-free reason for a store exception."""
    name = type(exc).__name__
    table = {
        "NotFoundError": "not found (no such bucket or object)",
        "FileNotFoundError": "not found (no such bucket or object)",
        "PermissionDeniedError": "access denied",
        "PermissionError": "access denied",
        "UnauthenticatedError": "no valid credentials",
        "AlreadyExistsError": "the object already exists",
        "PreconditionError": "a precondition failed",
        "NotSupportedError": "not supported by this store",
    }
    if name in table:
        return table[name]
    first = (str(exc).strip().splitlines() or [""])[0]
    first = _URL_RE.sub(r"\1", first)[:200]
    return f"{name}: {first}" if first else name


def _is_missing(exc: BaseException) -> bool:
    return isinstance(exc, FileNotFoundError) or type(exc).__name__ == "NotFoundError"


def _is_exists(exc: BaseException) -> bool:
    return isinstance(exc, FileExistsError) or type(exc).__name__ == "AlreadyExistsError"


def _check_key(key: str) -> str:
    """Refuse a key that could escape the target: every segment must already be safe."""
    segments = key.split("/")
    if not key or any(not s or safe_component(s) != s for s in segments):
        raise ValidationError("key", key, "relative segments made safe by Output.key_for")
    return key


def _store_for(url: str) -> ObjectStore:
    obstore = _import_obstore()
    scheme = url.split("://", 1)[0].lower()
    shown = shown_target(url).rstrip("/")
    if obstore is None:
        raise StoreUnavailableError(f"cannot use {shown}: {_INSTALL_HINT}", target=shown)
    from obstore.store import LocalStore, MemoryStore, from_url

    parts = urlsplit(url)
    if scheme == "memory":
        name = (parts.netloc + parts.path).strip("/")
        store: ObjectStore = _MEMORY_STORES.setdefault(name, MemoryStore())
        return store
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValidationError("output", shown, "a file:// URL on this machine")
        return LocalStore(parts.path or "/", mkdir=True)
    try:
        return from_url(url)
    except Exception as exc:  # obstore raises its own errors for bad URLs and settings
        raise StoreUnavailableError(f"cannot use {shown}: {_reason(exc)}", target=shown) from None


class StoreOutput:
    """Images stored in an object store through obstore: the `Output` for ``s3://``,
    ``gs://``, ``az://``, ``file://`` and ``memory://`` targets.

    Settings come from the standard environment (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
    ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``, ``AWS_ALLOW_HTTP``, and the GCS and Azure
    equivalents obstore reads), or from ``store``, an obstore store the caller built (then
    ``url`` only names it in messages and manifests).
    """

    def __init__(
        self,
        url: str,
        *,
        store: ObjectStore | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        max_concurrency: int = 4,
    ) -> None:
        if not isinstance(chunk_size, int) or chunk_size < _MIN_CHUNK_SIZE:
            raise ValidationError("chunk_size", chunk_size, f">= {_MIN_CHUNK_SIZE} bytes (5 MiB)")
        if not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ValidationError("max_concurrency", max_concurrency, ">= 1")
        self._url = shown_target(url).rstrip("/")
        self._scheme = url.split("://", 1)[0].lower()
        self._store = store if store is not None else _store_for(url)
        self.chunk_size = chunk_size
        self.max_concurrency = max_concurrency
        # A local directory keeps no object attributes: its objects are verified by reading.
        self.keeps_attributes = type(self._store).__name__ != "LocalStore"
        self._writable = False

    def __repr__(self) -> str:
        return f"<StoreOutput {self._url}>"

    @property
    def url(self) -> str:
        """The target, without credentials or query: ``s3://bucket/prefix``."""
        return self._url

    @property
    def store(self) -> ObjectStore:
        """The obstore store objects are written to."""
        return self._store

    def location(self, key: str) -> str:
        """The URL of the object ``key``."""
        return f"{self._url}/{key}"

    def key_for(self, stem: str, mime_type: str) -> str:
        """``stem`` made safe (the local files' rule) plus the extension of ``mime_type``."""
        return safe_component(stem) + extension_for(mime_type)

    def _error(self, action: str, key: str, exc: BaseException) -> StoreError:
        where = self.location(key)
        return StoreError(f"cannot {action} {where}: {_reason(exc)}", location=where, key=key)

    async def check_writable(self) -> None:
        """Write and delete a small probe object (once per `StoreOutput`); raise
        `StoreUnavailableError` naming the target if that fails (no credentials, no bucket,
        access denied)."""
        if self._writable:
            return
        obstore = _import_obstore()
        probe = f".xai-images-probe-{secrets.token_hex(6)}"
        try:
            await obstore.put_async(self._store, probe, b"", use_multipart=False)
            await obstore.delete_async(self._store, probe)
        except Exception as exc:
            raise StoreUnavailableError(
                f"cannot write to {self._url}: {_reason(exc)}", target=self._url
            ) from None
        self._writable = True

    async def open(self, key: str, mime_type: str, *, on_exists: OnExists = "fail") -> StoreUpload:
        """Start writing the object ``key``; nothing is visible until `StoreUpload.commit`."""
        if on_exists not in ("fail", "overwrite", "skip"):
            raise ValidationError("on_exists", on_exists, "one of 'fail', 'overwrite', 'skip'")
        return StoreUpload(self, _check_key(key), mime_type, on_exists)

    async def head(self, key: str) -> tuple[int, str | None, str | None] | None:
        """``(size, sha256 metadata, etag)`` of ``key``, or ``None`` when it does not exist."""
        obstore = _import_obstore()
        try:
            result = await obstore.get_async(self._store, key, options={"head": True})
        except Exception as exc:
            if _is_missing(exc):
                return None
            raise self._error("read", key, exc) from None
        meta = result.meta
        return int(meta["size"]), result.attributes.get(SHA256_METADATA), meta.get("e_tag")

    async def stat(self, keys: Sequence[str]) -> dict[str, tuple[int, str | None]]:
        """``(size, etag)`` of those ``keys`` that exist: one HEAD per key, all at once.

        (Not a listing: a store lists by whole path segments, so the keys of one request,
        ``name-0.jpg``, ``name-1.jpg``, ..., could only be found by reading a page of up to
        1,000 neighbouring keys, which costs more than a few HEADs once the prefix is full.)
        """
        obstore = _import_obstore()

        async def one(key: str) -> tuple[str, tuple[int, str | None]] | None:
            try:
                meta = await obstore.head_async(self._store, key)
            except Exception as exc:
                if _is_missing(exc):
                    return None
                raise self._error("read", key, exc) from None
            return key, (int(meta["size"]), meta.get("e_tag"))

        found = await asyncio.gather(*(one(key) for key in sorted({_check_key(k) for k in keys})))
        return dict(entry for entry in found if entry is not None)

    async def verify(self, key: str, *, size: int, sha256: str) -> bool:
        """Whether ``key`` holds ``size`` bytes with this ``sha256``: one HEAD for an object
        carrying its ``sha256`` metadata; one streamed read for one that does not."""
        found = await self.head(_check_key(key))
        if found is None or found[0] != size:
            return False
        if found[1] is not None:
            return found[1] == sha256
        return await self._hash_object(key) == sha256

    async def _hash_object(self, key: str) -> str:
        obstore = _import_obstore()
        digest = hashlib.sha256()
        try:
            result = await obstore.get_async(self._store, key)
            async for chunk in result.stream(min_chunk_size=1024 * 1024):
                await _update(digest, chunk)
        except Exception as exc:
            raise self._error("read", key, exc) from None
        return digest.hexdigest()

    async def sign_uploads(
        self, keys: Sequence[str], *, expires_in: datetime.timedelta
    ) -> list[str]:
        """Signed PUT URLs for ``keys`` (no Content-Type is signed), valid for ``expires_in``.

        The URLs are bearer secrets: hand them to the API only, never log or store them.
        """
        if self._scheme in _AZURE_SCHEMES or type(self._store).__name__ == "AzureStore":
            raise StoreUnavailableError(
                f"cannot sign uploads to {self._url}: Azure's Put Blob needs an "
                "x-ms-blob-type header that a SAS URL cannot carry; download the images "
                "instead (upload_urls off)",
                target=self._url,
            )
        if not datetime.timedelta(seconds=1) <= expires_in <= datetime.timedelta(days=7):
            raise ValidationError("expires_in", expires_in, "between 1 second and 7 days")
        obstore = _import_obstore()
        paths = [_check_key(key) for key in keys]
        try:
            urls = await obstore.sign_async(self._store, "PUT", paths, expires_in)
        except Exception as exc:
            raise StoreUnavailableError(
                f"cannot sign uploads to {self._url}: {_reason(exc)}", target=self._url
            ) from None
        return list(urls)


async def _update(digest: Any, chunk: Any) -> None:
    if len(chunk) >= _HASH_IN_THREAD:
        await asyncio.to_thread(digest.update, chunk)
    else:
        digest.update(chunk)


_END = object()


class _Failed(Exception):
    """Ends a multipart part stream, so that obstore aborts the upload."""


class StoreUpload:
    """One object being written to a `StoreOutput`: invisible until `commit`."""

    def __init__(self, output: StoreOutput, key: str, mime_type: str, on_exists: OnExists):
        self._output = output
        self.key = key
        self.mime_type = mime_type
        self._on_exists = on_exists
        self._digest = hashlib.sha256()
        self._buffer = bytearray()
        self.size = 0
        self._queue: asyncio.Queue[Any] | None = None
        self._task: asyncio.Task[Any] | None = None
        self._done = False

    def __repr__(self) -> str:
        return f"<StoreUpload {self._output.location(self.key)} {self.size} bytes>"

    async def write(self, chunk: bytes | bytearray | memoryview) -> None:
        """Append ``chunk``; past ``chunk_size`` bytes, waits for parts to go out."""
        if self._done:
            raise RuntimeError("write after commit or abort")
        if not chunk:
            return
        await _update(self._digest, chunk)
        self.size += len(chunk)
        if self._queue is None:
            self._buffer += chunk
            if len(self._buffer) > self._output.chunk_size:
                await self._start_multipart()
            return
        await self._send(bytes(chunk))

    async def _start_multipart(self) -> None:
        if self._on_exists != "overwrite" and await self._output.head(self.key) is not None:
            raise self._collision()
        obstore = _import_obstore()
        # One part in the queue and one being read: memory stays near two chunks.
        self._queue = asyncio.Queue(maxsize=2)
        first, self._buffer = bytes(self._buffer), bytearray()
        self._queue.put_nowait(first)
        self._task = asyncio.ensure_future(
            obstore.put_async(
                self._output.store,
                self.key,
                self._parts(),
                attributes=(
                    {"Content-Type": self.mime_type} if self._output.keeps_attributes else {}
                ),
                use_multipart=True,
                chunk_size=self._output.chunk_size,
                max_concurrency=self._output.max_concurrency,
            )
        )

    async def _send(self, item: object) -> None:
        """Queue ``item`` for the part stream, unless the upload has already failed."""
        assert self._queue is not None
        assert self._task is not None
        self._raise_if_failed()
        if not self._queue.full():
            self._queue.put_nowait(item)
            return
        put = asyncio.ensure_future(self._queue.put(item))
        try:
            await asyncio.wait({put, self._task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not put.done():
                put.cancel()
        self._raise_if_failed()

    async def _parts(self) -> AsyncIterator[bytes]:
        assert self._queue is not None
        while True:
            item = await self._queue.get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item
            yield item

    def _raise_if_failed(self) -> None:
        task = self._task
        if task is not None and task.done() and not task.cancelled():
            exc = task.exception()
            if exc is not None:
                raise self._output._error("write", self.key, exc) from None

    def _collision(self) -> FileCollisionError:
        where = self._output.location(self.key)
        return FileCollisionError(f"{where} already exists", path=Path(self.key))

    async def commit(self) -> Stored:
        """Make the object visible, complete, under its key and say what was stored."""
        if self._done:
            raise RuntimeError("commit after commit or abort")
        sha256 = self._digest.hexdigest()
        try:
            etag, skipped = await (self._finish_multipart() if self._task else self._put(sha256))
        except BaseException:
            await self.abort()
            raise
        self._done = True
        return Stored(
            location=self._output.location(self.key),
            key=self.key,
            size=self.size,
            sha256=sha256,
            mime_type=self.mime_type,
            etag=etag,
            skipped=skipped,
        )

    async def _put(self, sha256: str) -> tuple[str | None, bool]:
        obstore = _import_obstore()
        data, self._buffer = self._buffer, bytearray()
        attributes = {"Content-Type": self.mime_type, SHA256_METADATA: sha256}
        if not self._output.keeps_attributes:
            attributes = {}
        mode = "overwrite" if self._on_exists == "overwrite" else "create"
        try:
            result = await obstore.put_async(
                self._output.store,
                self.key,
                data,
                attributes=attributes,
                mode=mode,
                use_multipart=False,
            )
        except Exception as exc:
            if not _is_exists(exc):
                raise self._output._error("write", self.key, exc) from None
            if self._on_exists == "skip":
                found = await self._output.head(self.key)
                if found is not None and await self._output.verify(
                    self.key, size=self.size, sha256=sha256
                ):
                    return found[2], True
            raise self._collision() from None
        return result.get("e_tag"), False

    async def _finish_multipart(self) -> tuple[str | None, bool]:
        assert self._queue is not None
        assert self._task is not None
        await self._send(_END)
        try:
            result = await asyncio.shield(self._task)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise self._output._error("write", self.key, exc) from None
        return result.get("e_tag"), False

    async def abort(self) -> None:
        """Discard what was written: a multipart upload is aborted by obstore. Idempotent."""
        self._done = True
        self._buffer = bytearray()
        task, self._task = self._task, None
        if task is None or self._queue is None:
            return
        if not task.done():
            # Never cancel the put itself (a dropped upload is not aborted): end its part
            # stream with an error instead, and wait for obstore to abort the upload.
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(_Failed("aborted"))
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.shield(task)
        if task.done() and not task.cancelled():
            task.exception()


def store_output(
    target: str,
    *,
    store: ObjectStore | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> StoreOutput:
    """The `StoreOutput` for a store URL (``s3://bucket/prefix``, ...).

    Raises:
        StoreUnavailableError: obstore is not installed (the message says how to install
            it), or the URL cannot be turned into a store.
        ValidationError: ``target`` is not a store URL.
    """
    if not is_store_url(target):
        schemes = ", ".join(sorted(f"{s}://" for s in STORE_SCHEMES))
        raise ValidationError("output", target, f"a store URL ({schemes})")
    return StoreOutput(target, store=store, chunk_size=chunk_size)
