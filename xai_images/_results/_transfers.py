"""Saving and streaming generated images: the orchestration over ``_fetch`` and ``_files``.

`Transfers` belongs to one client: it holds the client's download options, the semaphore
that bounds downloads and writes in flight, the writer pool, and the event hooks that hear of
download retries. ``GeneratedImage.save/stream/read`` and ``ImagesResponse.save`` delegate here.
Downloads go through the client's one pooled session without any ``Authorization`` header: the
image host is not the API host and must never see the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Protocol, TypedDict, cast

import aiohttp

from .._config import DownloadOptions, int_at_least
from .._errors import (
    DownloadError,
    ImageBlockedError,
    IntegrityError,
    SaveError,
    ValidationError,
)
from .._hooks import DownloadRetry, Hooks
from .._wire._gate import budgets
from ._fetch import Fetch
from ._files import (
    OnExists,
    SavedImage,
    WriterPool,
    check_on_exists,
    final_path,
    retrieve,
    safe_component,
    save_error,
)
from ._local import BATCH_BYTES, IDLE_FLUSH, LocalDirectory
from ._output import Output, Stored, Upload, write_object
from ._sniff import sniff_mime
from ._targets import is_url, output_for

__all__ = ["Transfers"]


class _LocalSettings(TypedDict):
    fsync: bool
    writers: WriterPool
    batch: int
    idle: float


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


def _stem_of(image: _Image) -> str:
    """The default file stem; server values in it are made safe by ``safe_component``."""
    stem = getattr(image, "stem", None)
    if not (isinstance(stem, str) and stem):
        stem = f"{image.request_id or 'image'}-{image.index}"
    return safe_component(stem)


def _format_name(pattern: str, image: _Image) -> str:
    if not isinstance(pattern, str) or "\0" in pattern:
        raise ValidationError("name", pattern, "a str pattern without NUL characters")
    try:
        # The server's request id is made a harmless name part before it meets the caller's
        # pattern, so that only the pattern itself can be refused below.
        name = pattern.format(
            request_id=safe_component(image.request_id or "image"),
            index=image.index,
            stem=_stem_of(image),
        )
    except (KeyError, IndexError, ValueError, AttributeError, TypeError) as exc:
        raise ValidationError(
            "name", pattern, "a pattern using only {request_id}, {index} and {stem}"
        ) from exc
    if (
        not name
        or name in (".", "..")
        or any(sep in name for sep in ("/", "\\", os.sep))
        or (os.altsep and os.altsep in name)
    ):
        raise ValidationError("name", pattern, "a plain file name (no directories)")
    return name


class Transfers:
    """Downloads and saves the images of one client (one pooled session, one semaphore).

    Args:
        session: returns the client's pooled session (created on first use).
        options: download and save options.
        writers: the client's writer pool (``None``: one of its own, shut down by
            `aclose`).
        hooks: where download retries are published (``DownloadRetry``, with the image as
            ``origin``).
    """

    def __init__(
        self,
        session: Callable[[], aiohttp.ClientSession],
        options: DownloadOptions | None = None,
        *,
        writers: WriterPool | None = None,
        hooks: Hooks | None = None,
    ) -> None:
        self._session = session
        self.options = options if options is not None else DownloadOptions()
        self._semaphore = asyncio.Semaphore(self.options.concurrency)
        # Output URLs checked writable (once per target and client, not per call).
        self._ready: set[str] = set()
        # Checks in flight, by output URL: concurrent calls share one.
        self._checks: dict[str, asyncio.Task[None]] = {}
        self._writers = writers if writers is not None else WriterPool()
        self._hooks = hooks if hooks is not None else Hooks()

    def aclose(self) -> None:
        """Shut the writer pool down (pending writes finish first)."""
        self._writers.shutdown()

    def _fetch(
        self, image: _Image, url: str, size: int, restart: Callable[[], Awaitable[bool]]
    ) -> Fetch:
        on_retry = functools.partial(self._report_retry, url, image)
        return Fetch(self._session(), url, self.options, size, restart, on_retry)

    def _report_retry(
        self,
        url: str,
        image: _Image,
        attempt: int,
        delay: float,
        reason: str,
        error: DownloadError,
    ) -> None:
        """Publish a `DownloadRetry` of ``image``'s download from ``url`` to the hooks."""
        if self._hooks:
            self._hooks.emit(
                DownloadRetry(
                    url=url, attempt=attempt, delay=delay, reason=reason, error=error, origin=image
                )
            )

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
        if chunk_size is not None and not int_at_least(chunk_size, 1):
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
            fetch = self._fetch(image, url, size, restart)
            async with contextlib.aclosing(fetch.chunks()) as chunks:
                async for chunk in chunks:
                    yielded = True
                    yield chunk

    async def save(
        self,
        image: _Image,
        path: str | os.PathLike[str] | Output,
        *,
        on_exists: OnExists = "fail",
    ) -> SavedImage:
        """Write one image to ``path`` atomically and return what was written.

        Naming: if ``path`` is an existing directory (or ends with a separator), the file is
        ``<request_id>-<index>.<ext>`` in it. Otherwise the extension is corrected to the
        sniffed type: added when missing (``fox`` -> ``fox.png``) or not an image suffix
        (``fox.v2`` -> ``fox.v2.png``), replaced when it names another image type
        (``fox.jpg`` holding PNG bytes -> ``fox.png``). ``SavedImage.path`` is the truth.
        Missing parent directories are created. A target URL (``file:///dir``) or an `Output`
        is a directory: the image is stored under ``<request_id>-<index>.<ext>`` in it.

        Raises:
            ImageBlockedError: the image was withheld by moderation.
            ImageExpiredError: the URL expired (HTTP 403/404); not retried.
            DownloadStalledError, IntegrityError, DownloadError: retries ran out, or the bytes
                are not an image.
            FileCollisionError: the name is taken (see `OnExists`).
            SaveError: the file could not be written (disk full, permission denied, ...); the
                message names the path.
            ConfigurationError, ValidationError: ``path`` names a target that cannot be used
                (see `output_for`); raised before anything is fetched.
        """
        check_on_exists(on_exists)
        if image.blocked:
            raise _blocked_error(image)
        stem = _stem_of(image)
        if not isinstance(path, (str, os.PathLike)) or is_url(path):
            output = await self.output(path, field="path")
            async with self._semaphore:
                return await self._store(image, output, stem, None, on_exists)
        target = Path(path)
        as_dir = str(path).endswith(("/", os.sep))
        async with self._semaphore:
            try:
                is_dir = as_dir or await asyncio.to_thread(target.is_dir)
            except OSError as exc:
                raise save_error(exc, target, image.url) from exc
            if is_dir:
                return await self._store(image, self._local(target), stem, None, on_exists)
            return await self._store(image, self._local(target.parent), stem, target, on_exists)

    async def save_all(
        self,
        images: Iterable[_Image],
        directory: str | os.PathLike[str] | Output,
        *,
        name: str = "{request_id}-{index}",
        on_exists: OnExists = "fail",
        concurrency: int | None = None,
    ) -> list[SavedImage]:
        """Save many images into ``directory`` in parallel; returns results in input order.

        ``directory`` is a path, a ``file://`` URL or an `Output`. ``name`` is formatted with
        ``request_id`` (``"image"`` when unknown), ``index`` and ``stem``; the sniffed extension
        is appended. ``concurrency`` may lower the client's limit for this call. Every image is
        attempted even if some fail; files that were saved stay (each is complete and
        checked), failed ones leave nothing behind, and then the first error in input order is
        raised. Call `save` per image for per-image outcomes.

        Raises:
            ValidationError: a bad ``name`` pattern, two images mapping to the same name, or a
                bad ``concurrency``/``on_exists``/``directory``.
            ConfigurationError: ``directory`` names a target that is not available.
            ImageBlockedError, DownloadError and subclasses: see `save`.
        """
        check_on_exists(on_exists)
        if concurrency is not None and not int_at_least(concurrency, 1):
            raise ValidationError("concurrency", concurrency, "an int >= 1")
        items = list(images)
        stems = [_format_name(name, image) for image in items]
        if len(set(stems)) != len(stems):
            raise ValidationError("name", name, "a pattern giving each image its own name")
        output = await self.output(directory, field="directory")
        limit = asyncio.Semaphore(concurrency) if concurrency is not None else None

        async def one(image: _Image, stem: str) -> SavedImage:
            if image.blocked:
                raise _blocked_error(image)
            held = _hold(image)
            try:
                if limit is None:
                    async with self._semaphore:
                        return await self._store(image, output, stem, None, on_exists)
                async with limit, self._semaphore:
                    return await self._store(image, output, stem, None, on_exists)
            finally:
                if held:
                    budgets().answers.remove(held)

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

    def _local(self, root: Path) -> LocalDirectory:
        return LocalDirectory(root, **self._local_settings())

    def _local_settings(self) -> _LocalSettings:
        options = self.options
        return {
            "fsync": options.fsync,
            "writers": self._writers,
            "batch": max(options.chunk_size, BATCH_BYTES),
            # Well within the stall timeout, so that the bytes are on disk before a retry.
            "idle": min(IDLE_FLUSH, options.stall_timeout / 4),
        }

    async def output(
        self, target: str | os.PathLike[str] | Output, *, field: str = "output"
    ) -> Output:
        """The `Output` named by ``target`` (see `output_for`), checked writable.

        A local directory made here writes with this client's options and writer pool. The
        check (`Output.check_writable`) runs once per target URL and client.

        Raises:
            ConfigurationError, ValidationError: see `output_for`.
            SaveError: the target cannot be written (a local directory; a store names its own
                typed error).
        """
        output = output_for(target, field=field, **self._local_settings())
        url = output.url
        if url not in self._ready:
            await self._check(output, url)
            if len(self._ready) >= 1024:
                self._ready.clear()
            self._ready.add(url)
        return output

    async def _check(self, output: Output, url: str) -> None:
        """Run ``output.check_writable()`` once for all the calls that ask at the same time (a
        wave of a hundred saves into one new directory would otherwise start a hundred checks,
        and the default executor's threads with them, in one loop iteration)."""
        loop = asyncio.get_running_loop()
        check = self._checks.get(url)
        if check is None or check.get_loop() is not loop:
            check = self._checks[url] = loop.create_task(output.check_writable())
            check.add_done_callback(functools.partial(self._checked, url))
        await asyncio.shield(check)

    def _checked(self, url: str, check: asyncio.Task[None]) -> None:
        if self._checks.get(url) is check:
            del self._checks[url]
        retrieve(check)  # the callers that still wait see the error; no "never retrieved" log

    async def store(
        self,
        image: _Image,
        output: Output,
        stem: str,
        *,
        on_exists: OnExists = "fail",
    ) -> SavedImage:
        """Fetch or decode ``image`` and store it in ``output`` under
        ``output.key_for(stem, <sniffed type>)``, holding one of the client's transfer slots.

        The bulk engine's way in: ``output`` comes from `output` (checked once per job).

        Raises:
            ImageBlockedError, DownloadError and subclasses: see `save`.
        """
        check_on_exists(on_exists)
        if image.blocked:
            raise _blocked_error(image)
        held = _hold(image)
        try:
            async with self._semaphore:
                return await self._store(image, output, stem, None, on_exists)
        finally:
            if held:
                budgets().answers.remove(held)

    async def _store(
        self, image: _Image, output: Output, stem: str, named: Path | None, on_exists: OnExists
    ) -> SavedImage:
        """``named``: a caller's file name whose suffix is corrected (``image.save(file)``);
        else the key is the output's name for ``stem``."""
        try:
            content = image.content
            if content is not None:
                mime = sniff_mime(content)
                if mime is None:
                    raise IntegrityError(
                        f"image {image.index} of request {image.request_id or '(no id)'}: the "
                        "b64_json data is not a PNG, JPEG or WebP image"
                    )
                # For a local directory: one hop (open, write, hash, close, rename).
                key = _key(output, stem, named, mime)
                stored = await write_object(output, key, mime, content, on_exists=on_exists)
                return _result(image, stored, "b64_json")
            assert image.url is not None
            job = _UrlSave(self, image, image.url)
            stored = await job.run(output, stem, named, on_exists)
            return _result(image, stored, "url")
        except SaveError as exc:
            if exc.url is None:
                exc.url = image.url
            raise


def _hold(image: _Image) -> int:
    """Count ``image``'s decoded bytes with the answers being decoded on this loop (see
    ``_gate.Backlog``) until the caller removes them: while saves are behind, new answers wait
    to decode instead of piling up more images in memory. Returns the bytes (0 for a URL)."""
    content = image.content
    if content is None:
        return 0
    held = memoryview(content).nbytes
    budgets().answers.add(held)
    return held


def _key(output: Output, stem: str, named: Path | None, mime: str) -> str:
    if named is None:
        return output.key_for(stem, mime)
    return final_path(named, False, stem, mime).name


def _result(image: _Image, stored: Stored, source: str) -> SavedImage:
    return SavedImage(
        path=cast(Path, stored.path),  # see SavedImage.path
        bytes=stored.size,
        sha256=stored.sha256,
        mime_type=stored.mime_type,
        source=source,
        url=image.url,
        index=image.index,
        request_id=image.request_id,
        skipped=stored.skipped,
        location=stored.location,
        key=stored.key,
    )


class _UrlSave:
    """The state of storing one URL image: a class rather than closures, so that each save
    allocates one object and its methods (no per-image function objects and cells)."""

    __slots__ = ("_transfers", "image", "upload", "url", "written")

    def __init__(self, transfers: Transfers, image: _Image, url: str) -> None:
        self._transfers = transfers
        self.image = image
        self.url = url
        self.upload: Upload | None = None
        self.written = 0

    def _on_retry(self, attempt: int, delay: float, reason: str, error: DownloadError) -> None:
        self._transfers._report_retry(self.url, self.image, attempt, delay, reason, error)

    async def _restart(self) -> bool:
        # The server would not resume: what was written from the earlier attempt is void.
        upload, self.upload = self.upload, None
        self.written = 0
        if upload is not None:
            await upload.abort()
        return True

    async def run(
        self, output: Output, stem: str, named: Path | None, on_exists: OnExists
    ) -> Stored:
        """Download the image into ``output``; returns what was committed."""
        url = self.url
        options = self._transfers.options
        # A local, not an attribute: the fetch holds this object's methods, and a reference
        # back would make a cycle that only the garbage collector frees (with the upload and
        # part file hanging from it), lengthening every collection.
        fetch = Fetch(
            self._transfers._session(),
            url,
            options,
            options.chunk_size,
            self._restart,
            self._on_retry,
        )
        try:
            async with contextlib.aclosing(fetch.chunks()) as chunks:
                async for chunk in chunks:
                    upload = self.upload
                    if upload is None:
                        mime = fetch.mime
                        assert mime is not None
                        key = _key(output, stem, named, mime)
                        upload = self.upload = await output.open(key, mime, on_exists=on_exists)
                    # A Range resume asks from fetch.received: the upload keeps every byte
                    # handed to it, in order, before what follows.
                    self.written += len(chunk)
                    await upload.write(chunk)
            upload = self.upload
            if upload is None:  # pragma: no cover  (Fetch raises on an empty body)
                raise IntegrityError(f"{url} answered with an empty body", url=url)
            if fetch.total is not None and self.written != fetch.total:
                raise IntegrityError(
                    f"{url}: wrote {self.written} bytes, expected {fetch.total}", url=url
                )
            return await upload.commit()
        except BaseException:
            if self.upload is not None:
                await self.upload.abort()
            raise
