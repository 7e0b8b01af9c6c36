"""Edit inputs (URL, data URI, path, bytes, binary file, Files-store id) to API image objects.

Local inputs become ``data:`` URIs whose MIME type comes from the bytes, not from a file name.
Reading and base64-encoding run in a worker thread: a 10 MiB image takes tens of milliseconds to
encode, too long for the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
import re
from pathlib import Path
from typing import IO, Any, Union

import attrs

from .._errors import ValidationError
from .._results._sniff import sniff_mime

MAX_IMAGE_BYTES = 10 * 1024 * 1024
"""Largest input image (decoded bytes) an edit may send."""

__all__ = ["FileId", "ImageInput", "check_input_scheme", "resolve_image", "resolve_images"]

_ALLOWED_MIME = ("image/jpeg", "image/png", "image/webp")
_KIND = "a JPEG, PNG or WebP image"
_LIMIT = f"at most {MAX_IMAGE_BYTES // (1024 * 1024)} MiB"
# "scheme://..." or "file:...": a URL, not a path. One-letter schemes are Windows drives (C:/...).
_URL_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+)://|(file):", re.IGNORECASE)
_SUPPORTED_SCHEMES = ("http", "https")


def check_input_scheme(field: str, value: str) -> None:
    """Refuse a string edit input that is a URL of a scheme the API cannot fetch.

    ``http(s)://`` URLs and ``data:`` URIs are sent; ``file://``, ``ftp://`` and other schemes
    are refused here rather than read as a (missing) local path. Pass a `pathlib.Path`
    for a local file whose name happens to look like a URL.

    Raises:
        ValidationError: naming ``field`` and the unsupported scheme.
    """
    match = _URL_SCHEME.match(value)
    if match is None:
        return
    scheme = (match.group(1) or match.group(2)).lower()
    if scheme in _SUPPORTED_SCHEMES:
        return
    shown = value[:60] + "..." if len(value) > 60 else value
    raise ValidationError(
        field,
        shown,
        f"an http:// or https:// URL, a data URI, a local path, bytes or a FileId (the URL "
        f"scheme {scheme!r} is unsupported)",
    )


def _file_id_validator(_inst: object, _attr: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError("file_id", value, "a non-empty string")


@attrs.frozen
class FileId:
    """An image already in xAI's Files store, sent as ``{"file_id": ...}``.

    A plain ``str`` given to ``edit()`` is a URL, a data URI or a local path; wrap a file id in
    ``FileId("file-...")`` so that it can never be mistaken for a path.
    """

    id: str = attrs.field(validator=_file_id_validator)


ImageInput = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, IO[bytes], FileId]
"""What ``edit(image=...)`` accepts: see `resolve_image`."""


def _data_uri(field: str, data: bytes, shown: object) -> str:
    if len(data) > MAX_IMAGE_BYTES:
        raise ValidationError(field, shown, f"{_LIMIT} (it has {len(data):,} bytes)")
    mime = sniff_mime(data)
    if mime is None:
        raise ValidationError(field, shown, f"{_KIND} (the bytes are none of these)")
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def _decoded_size(b64: str) -> int:
    stripped = b64.rstrip()
    padding = len(stripped) - len(stripped.rstrip("="))
    return len(stripped) * 3 // 4 - padding


def _check_data_uri(field: str, uri: str) -> str:
    header, sep, payload = uri.partition(",")
    shown = uri[:60] + "..." if len(uri) > 60 else uri
    if not sep or not header.lower().endswith(";base64"):
        raise ValidationError(field, shown, "a base64 data URI: data:image/png;base64,...")
    mime = header[5:].split(";", 1)[0].strip().lower()
    # image/jpg is a common misspelling that servers accept as image/jpeg; the URI is sent as given.
    if mime not in _ALLOWED_MIME and mime != "image/jpg":
        raise ValidationError(field, shown, f"{_KIND} (data URI type {mime or 'missing'!r})")
    # Sized from the base64 length so a 10 MiB URI is not decoded just to be measured.
    size = _decoded_size(payload)
    if size > MAX_IMAGE_BYTES:
        raise ValidationError(field, shown, f"{_LIMIT} (it has {size:,} bytes)")
    try:
        head = base64.b64decode(payload[:24], validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError(field, shown, "valid base64 after the comma") from None
    if sniff_mime(head) is None:
        raise ValidationError(field, shown, f"{_KIND} (the decoded bytes are none of these)")
    return uri


def _read_path(field: str, raw: str | os.PathLike[str]) -> str:
    try:
        path = Path(raw).expanduser()
    except RuntimeError as exc:  # "~someone" with no such user
        raise ValidationError(field, str(raw), f"a usable local path ({exc})") from None
    try:
        size = path.stat().st_size
        if size > MAX_IMAGE_BYTES:
            raise ValidationError(field, str(path), f"{_LIMIT} (it has {size:,} bytes)")
        data = path.read_bytes()
    except FileNotFoundError:
        raise ValidationError(field, str(path), "an existing file (not found)") from None
    except IsADirectoryError:
        raise ValidationError(field, str(path), "a file (it is a directory)") from None
    except PermissionError:
        raise ValidationError(field, str(path), "a readable file (permission denied)") from None
    except (OSError, ValueError) as exc:
        # A name too long, a NUL byte, an unencodable name: no file can have it.
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ValidationError(field, str(path), f"a readable local file ({detail})") from None
    return _data_uri(field, data, str(path))


def _read_file_object(field: str, fileobj: IO[bytes]) -> str:
    # One byte over the limit is enough to know it is too big without reading a huge file.
    data = fileobj.read(MAX_IMAGE_BYTES + 1)
    if not isinstance(data, (bytes, bytearray)):
        raise ValidationError(field, fileobj, "a binary file object (opened with 'rb')")
    if len(data) > MAX_IMAGE_BYTES:
        raise ValidationError(field, fileobj, _LIMIT)
    return _data_uri(field, bytes(data), fileobj)


async def resolve_image(value: ImageInput, field: str = "image") -> dict[str, str]:
    """Turn one edit input into an API image object.

    - ``"http://..."`` / ``"https://..."``: sent as ``{"url": ...}`` (the server fetches it).
    - ``"data:image/...;base64,..."``: checked (JPEG/PNG/WebP, at most 10 MiB) and sent as is.
    - `FileId`: ``{"file_id": ...}``.
    - any other ``str`` or an ``os.PathLike``: a local file, read in a worker thread.
    - ``bytes`` / ``bytearray`` / ``memoryview``: the image itself.
    - a binary file object (anything with ``read()`` returning bytes): read in a worker thread.

    Local inputs become data URIs typed from their bytes.

    Raises:
        ValidationError: naming ``field`` (e.g. ``images[1]``) when the file is missing or
            unreadable, larger than 10 MiB, or not a JPEG, PNG or WebP image, or the string is a
            URL of another scheme than http(s) (``file://``, ``ftp://``, ...).
    """
    if isinstance(value, FileId):
        return {"file_id": value.id}
    if isinstance(value, str):
        lowered = value[:8].lower()
        if lowered.startswith(("http://", "https://")):
            return {"url": value}
        if lowered.startswith("data:"):
            return {"url": _check_data_uri(field, value)}
        if not value.strip():
            raise ValidationError(field, value, "a URL, a data URI, a path, bytes or a FileId")
        check_input_scheme(field, value)
        return {"url": await asyncio.to_thread(_read_path, field, value)}
    if isinstance(value, os.PathLike):
        return {"url": await asyncio.to_thread(_read_path, field, value)}
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        shown = f"<{len(data):,} bytes>"
        if len(data) > 256 * 1024:
            return {"url": await asyncio.to_thread(_data_uri, field, data, shown)}
        return {"url": _data_uri(field, data, shown)}
    if callable(getattr(value, "read", None)):
        return {"url": await asyncio.to_thread(_read_file_object, field, value)}
    raise ValidationError(
        field, value, "a URL, a data URI, a path, bytes, a binary file object or a FileId"
    )


async def resolve_images(values: list[ImageInput] | tuple[ImageInput, ...]) -> list[dict[str, str]]:
    """Resolve several edit inputs, each error naming ``images[i]``.

    Raises:
        ValidationError: as `resolve_image`.
    """
    return [await resolve_image(value, f"images[{i}]") for i, value in enumerate(values)]
