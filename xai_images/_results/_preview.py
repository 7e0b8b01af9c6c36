"""How images and saved files show themselves in Jupyter: mime bundles from what is handed in.

The IPython display protocol (``_repr_mimebundle_``) of the models calls in here. Nothing here
fetches: a picture is the image's bytes (shown inline: PNG/JPEG natively, WebP through an
``<img>`` tag), a `Link` (an ``<img src>`` the notebook's browser loads itself) or the reason
nothing can be shown. Whoever holds a client decides what to hand in: the sync ``Client``
reads URL images through its own loop thread; an ``AsyncClient``'s URL images are shown as
links, because its loop is the notebook's and is busy running the cell. A saved file is read
from disk once. Nothing here imports IPython, opens a session or starts a loop.
"""

from __future__ import annotations

import asyncio
import base64
import html
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from .._units import format_bytes
from ._sniff import sniff_mime

__all__ = [
    "Cell",
    "Link",
    "Picture",
    "file_bundle",
    "grid_bundle",
    "picture_bundle",
    "reason",
]

THUMB_PX = 256
# Mime types notebooks render natively; others (WebP) are shown through an <img> tag.
_NATIVE = frozenset({"image/png", "image/jpeg"})
_files: weakref.WeakKeyDictionary[Any, bytes | str] = weakref.WeakKeyDictionary()
_files_lock = threading.Lock()


@attrs.frozen
class Link:
    """An image shown by its URL (``<img src>``): the browser loads it, nothing here does."""

    url: str


Picture = bytes | Link | str
"""An image's bytes, its `Link`, or why it cannot be shown."""


@attrs.frozen
class Cell:
    """One image of a response grid: its picture, position and revised prompt."""

    picture: Picture
    index: int
    alt: str
    prompt: str | None = None


def reason(error: BaseException, timeout: float | None = None) -> str:
    """Why an image could not be read, in one short line."""
    if isinstance(error, asyncio.TimeoutError) and timeout is not None:
        return f"not fetched within {timeout:.0f} s"
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:200]}" if text else type(error).__name__


def _dimensions(data: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG, JPEG or WebP header, or ``None``."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        kind = data[12:16]
        if kind == b"VP8X":
            width = int.from_bytes(data[24:27], "little") + 1
            return width, int.from_bytes(data[27:30], "little") + 1
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


def _img_tag(picture: bytes | Link, alt: str, width: int | None) -> str:
    if isinstance(picture, Link):
        source = html.escape(picture.url)
    else:
        mime = sniff_mime(picture) or "image/png"
        source = f"data:{mime};base64,{base64.b64encode(picture).decode('ascii')}"
    style = f' style="width:{width}px;height:auto"' if width else ""
    return f'<img src="{source}" alt="{html.escape(alt)}"{style}>'


def picture_bundle(picture: Picture, alt: str) -> dict[str, Any]:
    """The display of one image: PNG/JPEG natively, other types and links as HTML."""
    if isinstance(picture, str):
        return {"text/plain": f"<{alt}: {picture}>"}
    if isinstance(picture, bytes):
        mime = sniff_mime(picture) or "application/octet-stream"
        if mime in _NATIVE:
            return {mime: base64.b64encode(picture).decode("ascii"), "text/plain": f"<{alt}>"}
    return {"text/html": _img_tag(picture, alt, None), "text/plain": f"<{alt}>"}


def grid_bundle(cells: Sequence[Cell], facts: Sequence[str], text: str) -> dict[str, Any]:
    """The display of a response: a grid of thumbnails, each with its size and revised prompt,
    then ``facts`` (already plain text) in one line; ``text`` is the plain-text form."""
    shown = []
    for cell in cells:
        prompt = html.escape(cell.prompt or "")
        note = ""
        if isinstance(cell.picture, str):
            picture = (
                f'<div style="width:{THUMB_PX}px;height:{THUMB_PX // 2}px;border:1px dashed '
                f'#999;display:flex;align-items:center;justify-content:center">'
                f"{html.escape(cell.picture)}</div>"
            )
        else:
            picture = _img_tag(cell.picture, cell.prompt or cell.alt, THUMB_PX)
            if isinstance(cell.picture, bytes):
                note = html.escape(_caption(cell.picture))
        shown.append(
            f'<figure style="margin:0;width:{THUMB_PX}px">{picture}<figcaption '
            f'style="font-size:12px">#{cell.index} {note}<br>{prompt}</figcaption></figure>'
        )
    grid = (
        '<div style="display:flex;flex-wrap:wrap;gap:8px">' + "".join(shown) + "</div>"
        f'<div style="font-size:12px;color:#666">{html.escape(", ".join(facts))}</div>'
    )
    return {"text/html": grid, "text/plain": text}


def file_bundle(saved: object, path: Path | None, location: str) -> dict[str, Any]:
    """The display of a saved image (``saved``, the key of the cache): a local file is read from
    disk once; an object elsewhere (``path`` is ``None``) is named by its ``location``, not read."""
    with _files_lock:
        data = _files.get(saved)
        if data is None:
            if path is None:
                data = "stored at " + location
            else:
                try:
                    data = path.read_bytes()
                except OSError as exc:
                    data = reason(exc)
            _files[saved] = data
    bundle = picture_bundle(data, str(path) if path is not None else location)
    bundle["text/plain"] = repr(saved)
    return bundle
