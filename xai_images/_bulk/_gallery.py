"""A self-contained ``index.html`` for a bulk job's output directory, built from its manifest.

The page has inline CSS, no scripts and no network references: thumbnails point at the images
by relative path, so the folder can be moved or zipped and still opens anywhere.
"""

from __future__ import annotations

import html
import os
import stat
import struct
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

import attrs

from .._api._requests import EditRequest, field_spec
from .._results._safefs import atomic_write
from ._manifest import ManifestRecord
from ._progress import format_bytes, format_usd
from ._shard import load_manifests

__all__ = ["image_dimensions", "render_gallery", "write_gallery"]

# The request fields a card shows when set, as the fields themselves say (FieldSpec.gallery).
_SHOWN = tuple(f.name for f in attrs.fields(EditRequest) if field_spec(f).gallery)

_CSS = """
:root { color-scheme: light dark; --fg: #1d1d1f; --bg: #f5f5f7; --card: #fff; --muted: #6e6e73;
  --bad: #b3261e; --line: #d2d2d7; }
@media (prefers-color-scheme: dark) { :root { --fg: #f5f5f7; --bg: #111; --card: #1c1c1e;
  --muted: #a1a1a6; --bad: #ff6b60; --line: #3a3a3c; } }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif;
  color: var(--fg); background: var(--bg); }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 32px 0 12px; }
.summary { color: var(--muted); margin: 0 0 20px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(240px, 1fr)); gap: 16px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
  overflow: hidden; display: flex; flex-direction: column; }
.thumbs { display: grid; grid-template-columns: repeat(auto-fit, minmax(110px, 1fr)); gap: 2px; }
.thumbs a { display: block; aspect-ratio: 1 / 1; background: var(--line); }
.thumbs img { width: 100%; height: 100%; object-fit: cover; display: block; }
.meta { padding: 10px 12px 12px; }
.prompt { margin: 0 0 6px; font-weight: 600; overflow-wrap: anywhere; }
.revised { margin: 0 0 6px; color: var(--muted); font-size: 13px; overflow-wrap: anywhere; }
dl { display: grid; grid-template-columns: auto 1fr; gap: 2px 10px; margin: 0; font-size: 12px;
  color: var(--muted); }
dt { font-weight: 600; } dd { margin: 0; overflow-wrap: anywhere; }
table { border-collapse: collapse; width: 100%; background: var(--card); font-size: 13px; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line);
  vertical-align: top; overflow-wrap: anywhere; }
.bad { color: var(--bad); font-weight: 600; }
"""


def image_dimensions(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """``(width, height)`` of a PNG, JPEG or WebP file from its header, or ``None``."""
    try:
        # Non-blocking open and a regular-file check: a FIFO or device under an image's name
        # must not hang (or feed) the page being built.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            head = fh.read(65536)
    except OSError:
        return None
    return _dimensions(head)


def _dimensions(head: bytes) -> tuple[int, int] | None:
    if head.startswith(b"\x89PNG\r\n\x1a\n") and len(head) >= 24 and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
        return int(width), int(height)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP" and len(head) >= 30:
        chunk = head[12:16]
        if chunk == b"VP8X":
            width = 1 + int.from_bytes(head[24:27], "little")
            height = 1 + int.from_bytes(head[27:30], "little")
            return width, height
        if chunk == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":
            width, height = struct.unpack("<HH", head[26:30])
            return width & 0x3FFF, height & 0x3FFF
        if chunk == b"VP8L" and head[20:21] == b"\x2f":
            bits = int.from_bytes(head[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        return None
    if head.startswith(b"\xff\xd8"):
        return _jpeg_dimensions(head)
    return None


def _jpeg_dimensions(data: bytes) -> tuple[int, int] | None:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        # SOFn frames (not DHT 0xC4, JPG 0xC8, DAC 0xCC) carry the size.
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if pos + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return int(width), int(height)
        pos += 2 + length
    return None


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _href(relative: str) -> str:
    # Percent-encode each path segment so spaces, '#', '?' in names survive.
    return "/".join(quote(part) for part in PurePosixPath(relative).parts)


def _input_refs(request: Mapping[str, Any]) -> list[str]:
    refs: list[Any] = []
    if request.get("image") is not None:
        refs.append(request["image"])
    refs.extend(request.get("images") or [])
    out = []
    for ref in refs:
        if isinstance(ref, Mapping):
            ref = ref.get("url") or ref.get("file_id") or ref.get("path") or ""
        text = str(ref)
        if text.startswith("data:"):
            text = text[:30] + "..."
        out.append(text)
    return out


def _card(record: ManifestRecord, directory: Path) -> str:
    request = record.request
    thumbs = []
    dims_seen = []
    total_bytes = 0
    for f in record.files:
        href = _href(f.path)
        dims = image_dimensions(directory / f.path)
        if dims is not None:
            dims_seen.append(f"{dims[0]}x{dims[1]}")
        total_bytes += f.bytes
        size_attrs = f' width="{dims[0]}" height="{dims[1]}"' if dims else ""
        thumbs.append(
            f'<a href="{href}"><img src="{href}" alt="{_e(f.path)}" loading="lazy"{size_attrs}></a>'
        )
    revised = next((f.revised_prompt for f in record.files if f.revised_prompt), None)
    model = record.model or request.get("model") or "default"
    rows = [
        ("id", record.id),
        ("model", model),
        ("size", ", ".join(dict.fromkeys(dims_seen)) or "?"),
        ("files", f"{len(record.files)} ({format_bytes(total_bytes)})"),
    ]
    if record.cost_in_usd_ticks is not None:
        rows.append(("cost", format_usd(record.cost_in_usd_ticks)))
    for key in _SHOWN:
        if request.get(key):
            rows.append((key, str(request[key])))
    inputs = _input_refs(request)
    if inputs:
        rows.append(("edited", ", ".join(inputs)))
    dl = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows)
    revised_html = f'<p class="revised">{_e(revised)}</p>' if revised else ""
    return (
        f'<article class="card" id="{_e(record.id)}"><div class="thumbs">{"".join(thumbs)}</div>'
        f'<div class="meta"><p class="prompt">{_e(request.get("prompt", ""))}</p>'
        f"{revised_html}<dl>{dl}</dl></div></article>"
    )


def render_gallery(
    records: Iterable[ManifestRecord],
    directory: str | os.PathLike[str],
    *,
    title: str = "xai-images gallery",
) -> str:
    """The gallery page for ``records`` whose files live under ``directory``, as a string."""
    base = Path(directory)
    ok: list[ManifestRecord] = []
    bad: list[ManifestRecord] = []
    for record in records:
        (ok if record.status == "ok" and record.files else bad).append(record)
    cost = sum(r.cost_in_usd_ticks or 0 for r in ok + bad)
    images = sum(len(r.files) for r in ok)
    summary = (
        f"{len(ok)} ok, {len(bad)} not ok, {images} images, cost {format_usd(cost)} "
        f"(as reported by the API)"
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f'<h1>{_e(title)}</h1><p class="summary">{_e(summary)}</p>',
    ]
    if ok:
        parts.append('<section class="grid">')
        parts.extend(_card(r, base) for r in ok)
        parts.append("</section>")
    else:
        parts.append("<p>No images yet.</p>")
    if bad:
        parts.append(f'<h2 id="failures">Not generated ({len(bad)})</h2>')
        parts.append(
            "<table><thead><tr><th>id</th><th>status</th><th>line</th><th>prompt</th>"
            "<th>error</th></tr></thead><tbody>"
        )
        for r in bad:
            error = r.error or ""
            if r.error_type:
                error = f"{r.error_type}: {error}"
            parts.append(
                f'<tr id="{_e(r.id)}"><td>{_e(r.id)}</td><td class="bad">{_e(r.status)}</td>'
                f"<td>{_e(r.line if r.line is not None else '')}</td>"
                f"<td>{_e(r.request.get('prompt', ''))}</td><td>{_e(error)}</td></tr>"
            )
        parts.append("</tbody></table>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_gallery(
    directory: str | os.PathLike[str],
    *,
    manifest: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
    title: str = "xai-images gallery",
) -> Path:
    """Write ``index.html`` into ``directory`` from the job's manifest; return its path.

    Args:
        directory: the job's output directory (image paths in the manifest are relative to it).
        manifest: the manifest file (default ``directory/manifest.jsonl``), or several (the
            shards of one job, ``--shard K/N``), read as one.

    The page is written to a temporary file with a random name and moved over ``index.html``,
    so a symbolic link planted at either name is never written through.

    Raises:
        FileNotFoundError: there is no manifest.
        SaveError: the manifest is a symbolic link, or the page cannot be written.
    """
    base = Path(directory)
    if manifest is None:
        sources: list[str | os.PathLike[str]] = [base / "manifest.jsonl"]
    elif isinstance(manifest, (str, os.PathLike)):
        sources = [manifest]
    else:
        sources = list(manifest)
    page = render_gallery(load_manifests(sources).values(), base, title=title)
    # Never written through a link planted at index.html: a fresh file replaces the name.
    return atomic_write(base / "index.html", page.encode("utf-8", "xmlcharrefreplace"))
