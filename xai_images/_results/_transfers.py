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
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Protocol

import aiohttp

from .._config import DownloadOptions, int_at_least
from .._errors import DownloadError, ImageBlockedError, IntegrityError, ValidationError
from .._hooks import DownloadRetry, Hooks
from ._fetch import Fetch
from ._files import (
    OnExists,
    PartFile,
    SavedImage,
    WriterPool,
    check_on_exists,
    final_path,
    retrieve,
    safe_component,
    save_error,
)
from ._sniff import sniff_mime

__all__ = ["Transfers"]

# URL images are written in batches of at least this (or chunk_size, if larger): an image up to
# this size takes one worker-thread hop (open, write, close, rename), a larger one one per batch.
_BATCH = 1024 * 1024
# Seconds a paused download keeps received bytes only in memory before writing them.
_IDLE_FLUSH = 0.25


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
        self._made_dirs: set[Path] = set()
        self._writers = writers if writers is not None else WriterPool()
        self._hooks = hooks if hooks is not None else Hooks()

    def aclose(self) -> None:
        """Shut the writer pool down (pending writes finish first)."""
        self._writers.shutdown()

    def _fetch(
        self, image: _Image, url: str, size: int, restart: Callable[[], Awaitable[bool]]
    ) -> Fetch:
        hooks = self._hooks

        def on_retry(attempt: int, delay: float, reason: str, error: DownloadError) -> None:
            if hooks:
                hooks.emit(
                    DownloadRetry(
                        url=url,
                        attempt=attempt,
                        delay=delay,
                        reason=reason,
                        error=error,
                        origin=image,
                    )
                )

        return Fetch(self._session(), url, self.options, size, restart, on_retry)

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
            FileCollisionError: the name is taken (see `OnExists`).
            SaveError: the file could not be written (disk full, permission denied, ...); the
                message names the path.
        """
        check_on_exists(on_exists)
        if image.blocked:
            raise _blocked_error(image)
        target = Path(path)
        as_dir = str(path).endswith(("/", os.sep))
        async with self._semaphore:
            try:
                is_dir = as_dir or await asyncio.to_thread(target.is_dir)
            except OSError as exc:
                raise save_error(exc, target, image.url) from exc
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
        first error in input order is raised. Call `save` per image for per-image
        outcomes.

        Raises:
            ValidationError: a bad ``name`` pattern, two images mapping to the same name, or a
                bad ``concurrency``/``on_exists``.
            ImageBlockedError, DownloadError and subclasses: see `save`.
        """
        check_on_exists(on_exists)
        if concurrency is not None and not int_at_least(concurrency, 1):
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
                raise save_error(exc, root, None) from exc
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
        part = PartFile(
            final_path(target, is_dir, stem, mime),
            fsync=self.options.fsync,
            url=None,
            writers=self._writers,
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
        job = _UrlSave(self, image, url)
        part = await job.run(target, is_dir, stem, on_exists)
        assert job.fetch.mime is not None
        return self._result(image, part, job.fetch.mime, "url", job.skipped)

    def _result(
        self, image: _Image, part: PartFile, mime: str, source: str, skipped: bool
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


class _UrlSave:
    """The state of saving one URL image: a class rather than closures, so that each save
    allocates one object and its methods (no per-image function objects and cells)."""

    __slots__ = (
        "_background",
        "_pending",
        "_pending_bytes",
        "_timer",
        "_transfers",
        "fetch",
        "image",
        "part",
        "skipped",
        "url",
    )

    def __init__(self, transfers: Transfers, image: _Image, url: str) -> None:
        self._transfers = transfers
        self.image = image
        self.url = url
        self.part: PartFile | None = None
        # Chunks received and not yet written: kept as they came (no copy) and handed to the
        # worker thread in batches, written with one writev.
        self._pending: list[bytes | bytearray | memoryview] = []
        self._pending_bytes = 0
        # A body that pauses (slow or stalled server) does not keep its bytes only in memory:
        # after a short idle time they are written in the background.
        self._timer: asyncio.TimerHandle | None = None
        self._background: asyncio.Future[bool] | None = None
        self.skipped = False
        options = transfers.options
        self.fetch = Fetch(
            transfers._session(),
            url,
            options,
            options.chunk_size,
            self._restart,
            self._on_retry,
        )

    def _on_retry(self, attempt: int, delay: float, reason: str, error: DownloadError) -> None:
        hooks = self._transfers._hooks
        if hooks:
            hooks.emit(
                DownloadRetry(
                    url=self.url,
                    attempt=attempt,
                    delay=delay,
                    reason=reason,
                    error=error,
                    origin=self.image,
                )
            )

    def _flush_in_background(self) -> None:
        self._timer = None
        part = self.part
        if part is None or not self._pending or self._background is not None:
            return
        pieces, self._pending, self._pending_bytes = self._pending, [], 0
        self._background = asyncio.ensure_future(part.put(pieces))

    async def _settle(self) -> None:
        if self._background is not None:
            done, self._background = self._background, None
            await done

    async def _restart(self) -> bool:
        # Bytes buffered or written from the earlier attempt are void.
        await self._settle()
        self._pending, self._pending_bytes = [], 0
        if self.part is not None:
            await self.part.truncate()
        return True

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def run(self, target: Path, is_dir: bool, stem: str, on_exists: str) -> PartFile:
        """Download and write the image; returns the committed part file."""
        options = self._transfers.options
        writers = self._transfers._writers
        fetch = self.fetch
        url = self.url
        batch = max(options.chunk_size, _BATCH)
        # Well within the stall timeout, so that the bytes are on disk before a retry.
        idle = min(_IDLE_FLUSH, options.stall_timeout / 4)
        loop = asyncio.get_running_loop()
        try:
            async with contextlib.aclosing(fetch.chunks()) as chunks:
                async for chunk in chunks:
                    part = self.part
                    if part is None:
                        assert fetch.mime is not None
                        final = final_path(target, is_dir, stem, fetch.mime)
                        part = self.part = PartFile(
                            final, fsync=options.fsync, url=url, writers=writers
                        )
                    self._pending.append(chunk)
                    self._pending_bytes += len(chunk)
                    # A Range resume asks from fetch.received, which counts these pending
                    # bytes too: they stay here and are written in order before what follows.
                    if self._pending_bytes >= batch:
                        self._cancel_timer()
                        await self._settle()
                        pieces, self._pending, self._pending_bytes = self._pending, [], 0
                        await part.put(pieces)
                    elif self._timer is None:
                        self._timer = loop.call_later(idle, self._flush_in_background)
            self._cancel_timer()
            await self._settle()
            part = self.part
            if part is None:  # pragma: no cover  (Fetch raises on an empty body)
                raise IntegrityError(f"{url} answered with an empty body", url=url)
            if fetch.total is not None and part.size + self._pending_bytes != fetch.total:
                raise IntegrityError(
                    f"{url}: wrote {part.size + self._pending_bytes} bytes, expected {fetch.total}",
                    url=url,
                )
            assert fetch.mime is not None
            last, self._pending, self._pending_bytes = self._pending, [], 0
            self.skipped = await part.put(last, commit=on_exists)
        except BaseException:
            self._cancel_timer()
            background = self._background
            if background is not None:
                background.cancel()
                # Retrieved, so that asyncio does not log it; abort() waits for its thread.
                background.add_done_callback(retrieve)
            if self.part is not None:
                await self.part.abort()
            raise
        return part
