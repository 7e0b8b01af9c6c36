"""How images, responses, saved files and bulk-job progress show themselves in Jupyter.

The models' ``_repr_mimebundle_`` methods (the IPython display protocol) call in here. An image
is fetched only when it is first displayed, at most once (its bytes, or why it could not be
fetched, are kept for later displays); ``b64_json`` images already hold their bytes. A fetch
never waits longer than `FETCH_TIMEOUT` and never runs on the caller's event loop (in a
notebook that loop is busy running the cell): images of a sync ``Client`` go through the
client's own loop thread and connection pool; images of an ``AsyncClient`` through a
short-lived loop thread of their own, with a session that is closed right after.

Nothing here imports IPython: the bundles are plain dicts, and the live progress display is
used only when IPython is already imported and a kernel is running.
"""

from __future__ import annotations

import asyncio
import base64
import html
import sys
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .._bulk._progress import Progress, format_bytes, format_usd
from .._results._sniff import sniff_mime

if TYPE_CHECKING:
    from .._api._models import GeneratedImage, ImagesResponse
    from .._bulk._progress import ProgressEvent
    from .._results._files import SavedImage

__all__ = [
    "FETCH_TIMEOUT",
    "Fetch",
    "LiveProgress",
    "fetch_detached",
    "fetch_images",
    "image_bundle",
    "progress_html",
    "response_bundle",
    "saved_bundle",
]

FETCH_TIMEOUT = 30.0
"""Seconds a display waits for its images before showing why they are missing."""

Fetch = Callable[["list[GeneratedImage]", float], "list[bytes | BaseException]"]
"""Reads images for display (blocking); one result or error per image, in order."""

_THUMB_PX = 256
# Mime types notebooks render natively; others (WebP) are shown through an <img> tag.
_NATIVE = frozenset({"image/png", "image/jpeg"})
_images: weakref.WeakKeyDictionary[Any, bytes | str] = weakref.WeakKeyDictionary()
_files: weakref.WeakKeyDictionary[Any, bytes | str] = weakref.WeakKeyDictionary()
# Held while fetching: two displays of one image must not fetch it twice.
_lock = threading.Lock()


async def fetch_images(
    images: Sequence[GeneratedImage], timeout: float
) -> list[bytes | BaseException]:
    """Read ``images`` concurrently through their client (on its loop); errors are returned."""

    async def one(image: GeneratedImage) -> bytes:
        return await asyncio.wait_for(image.read(), timeout)

    return await asyncio.gather(*(one(image) for image in images), return_exceptions=True)


async def _fetch_detached(
    images: Sequence[GeneratedImage], timeout: float
) -> list[bytes | BaseException]:
    import aiohttp

    from .._config import DownloadOptions
    from .._results._transfers import Transfers

    async with aiohttp.ClientSession() as session:
        transfers = Transfers(lambda: session, DownloadOptions())

        async def one(image: GeneratedImage) -> bytes:
            async def read() -> bytes:
                return b"".join([chunk async for chunk in transfers.stream(image)])

            return await asyncio.wait_for(read(), timeout)

        return await asyncio.gather(*(one(image) for image in images), return_exceptions=True)


def fetch_detached(images: list[GeneratedImage], timeout: float) -> list[bytes | BaseException]:
    """Read ``images`` on a short-lived loop thread with a session of its own (blocking)."""
    # The image's own client may live on a loop that is busy (a notebook cell) or gone (a
    # finished asyncio.run): its URL is public, so a private session fetches it instead.
    from anyio.from_thread import start_blocking_portal

    with start_blocking_portal() as portal:
        return portal.call(_fetch_detached, images, timeout)


def _bytes_of(images: Sequence[GeneratedImage], fetch: Fetch | None) -> list[bytes | str]:
    """Each image's bytes, or the reason it cannot be shown; fetches each at most once."""
    with _lock:
        missing = [
            image
            for image in images
            if image.content is None and not image.blocked and image not in _images
        ]
        if missing:
            try:
                results = (fetch or fetch_detached)(missing, FETCH_TIMEOUT)
            except Exception as exc:  # e.g. the client is closed: shown, never raised
                results = [exc] * len(missing)
            for image, result in zip(missing, results, strict=True):
                _images[image] = result if isinstance(result, bytes) else _reason(result)
        out: list[bytes | str] = []
        for image in images:
            if image.content is not None:
                out.append(image.content)
            elif image.blocked:
                out.append("withheld by moderation")
            else:
                out.append(_images[image])
        return out


def _reason(error: BaseException) -> str:
    if isinstance(error, asyncio.TimeoutError):
        return f"not fetched within {FETCH_TIMEOUT:.0f} s"
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:200]}" if text else type(error).__name__


def _dimensions(data: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG, JPEG or WebP header, or ``None``."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        kind = data[12:16]
        if kind == b"VP8X":
            return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(
                data[27:30], "little"
            ) + 1
        if kind == b"VP8L":
            bits = int.from_bytes(data[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if kind == b"VP8 ":
            return (
                int.from_bytes(data[26:28], "little") & 0x3FFF,
                int.from_bytes(data[28:30], "little") & 0x3FFF,
            )
        return None
    if data[:2] == b"\xff\xd8":
        pos = 2
        while pos + 9 <= len(data) and data[pos] == 0xFF:
            marker, length = data[pos + 1], int.from_bytes(data[pos + 2 : pos + 4], "big")
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                height = int.from_bytes(data[pos + 5 : pos + 7], "big")
                return int.from_bytes(data[pos + 7 : pos + 9], "big"), height
            pos += 2 + length
    return None


def _caption(data: bytes) -> str:
    size = _dimensions(data)
    shape = f"{size[0]}\u00d7{size[1]}, " if size else ""
    return f"{shape}{format_bytes(len(data))}"


def _img_tag(data: bytes, mime: str, alt: str, width: int | None) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    style = f' style="width:{width}px;height:auto"' if width else ""
    return f'<img src="data:{mime};base64,{encoded}" alt="{html.escape(alt)}"{style}>'


def _bundle_of(data: bytes | str, alt: str) -> dict[str, Any]:
    if isinstance(data, str):
        return {"text/plain": f"<{alt}: {data}>"}
    mime = sniff_mime(data) or "application/octet-stream"
    if mime in _NATIVE:
        return {mime: base64.b64encode(data).decode("ascii"), "text/plain": f"<{alt}>"}
    return {"text/html": _img_tag(data, mime, alt, None), "text/plain": f"<{alt}>"}


def image_bundle(image: GeneratedImage, fetch: Fetch | None = None) -> dict[str, Any]:
    """The display of one image: the image itself (PNG/JPEG natively, WebP as HTML)."""
    (data,) = _bytes_of([image], fetch)
    return _bundle_of(data, f"image {image.index} of {image.request_id or 'a response'}")


def response_bundle(response: ImagesResponse, fetch: Fetch | None = None) -> dict[str, Any]:
    """The display of a response: a grid of thumbnails, each with its size and revised prompt."""
    images = list(response.data)
    cells = []
    for image, data in zip(images, _bytes_of(images, fetch), strict=True):
        prompt = html.escape(image.revised_prompt or "")
        if isinstance(data, bytes):
            mime = sniff_mime(data) or "image/png"
            picture = _img_tag(data, mime, image.revised_prompt or image.stem, _THUMB_PX)
            note = html.escape(_caption(data))
        else:
            picture = (
                f'<div style="width:{_THUMB_PX}px;height:{_THUMB_PX // 2}px;border:1px dashed '
                f'#999;display:flex;align-items:center;justify-content:center">'
                f"{html.escape(data)}</div>"
            )
            note = ""
        cells.append(
            f'<figure style="margin:0;width:{_THUMB_PX}px">{picture}<figcaption '
            f'style="font-size:12px">#{image.index} {note}<br>{prompt}</figcaption></figure>'
        )
    facts = [f"{len(response.images)} image(s)"]
    if response.blocked_count:
        facts.append(f"{response.blocked_count} withheld by moderation")
    if response.model:
        facts.append(html.escape(response.model))
    if response.usage is not None and response.usage.cost_in_usd_ticks is not None:
        facts.append(format_usd(response.usage.cost_in_usd_ticks))
    if response.request_id:
        facts.append(f"request {html.escape(response.request_id)}")
    grid = (
        '<div style="display:flex;flex-wrap:wrap;gap:8px">' + "".join(cells) + "</div>"
        f'<div style="font-size:12px;color:#666">{", ".join(facts)}</div>'
    )
    return {"text/html": grid, "text/plain": repr(response)}


def saved_bundle(saved: SavedImage) -> dict[str, Any]:
    """The display of a saved file: read from disk once."""
    with _lock:
        data = _files.get(saved)
        if data is None:
            path = saved.path  # None for a target that is not a local directory
            try:
                data = path.read_bytes() if path is not None else "not a local file"
            except OSError as exc:
                data = _reason(exc)
            _files[saved] = data
    bundle = _bundle_of(data, str(saved.path or saved.location))
    bundle["text/plain"] = repr(saved)
    return bundle


def progress_html(progress: Progress) -> str:
    """A bulk job's counters as a small HTML block with a progress bar."""
    p = progress
    total = max(p.total, p.done, 1)
    state = "finished" if p.finished_at is not None else "running"
    if p.interrupted:
        state = "interrupted"
    return (
        f'<div style="font-family:monospace;font-size:12px"><progress value="{p.done}" '
        f'max="{total}" style="width:240px"></progress> {p.done}/{p.total} {state}<br>'
        f"{p.ok} ok, {p.errors} errors, {p.skipped} skipped, {p.images} images, "
        f"{html.escape(format_bytes(p.bytes))}, {p.images_per_second:.2f} img/s, "
        f"{format_usd(p.cost_in_usd_ticks)}, {p.rate_limited}\u00d7429, {p.retries} retries</div>"
    )


def _kernel_running() -> bool:
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class LiveProgress:
    """A bulk job's progress in a notebook: one display under the cell, updated in place at most
    four times a second; does nothing outside a Jupyter kernel.

    The sync client's bulk jobs use one on their own. It is also an ``on_event`` callback, for
    bulk jobs of the async client in a notebook: ``client.batch(..., on_event=LiveProgress())``.
    """

    _INTERVAL = 0.25

    def __init__(self) -> None:
        self._handle: Any = None
        self._last = 0.0
        self._off = not _kernel_running()

    def __call__(self, event: ProgressEvent) -> None:
        """Show the event's counters (an ``on_event`` callback)."""
        self.show(event.progress, final=event.kind == "finished")

    def show(self, progress: Progress, *, final: bool = False) -> None:
        """Draw ``progress``, unless the last redraw was very recent (``final`` always draws)."""
        if self._off:
            return
        now = time.monotonic()
        if not final and self._handle is not None and now - self._last < self._INTERVAL:
            return
        self._last = now
        bundle = {"text/html": progress_html(progress), "text/plain": repr(progress)}
        try:  # a display problem must not stop the job
            if self._handle is None:
                from IPython import display as ipython_display

                show: Any = ipython_display.display
                self._handle = show(bundle, raw=True, display_id=True)
            else:
                self._handle.update(bundle, raw=True)
        except Exception:
            self._off = True
