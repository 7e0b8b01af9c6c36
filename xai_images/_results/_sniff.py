"""Image type from magic bytes.

The API's ``mime_type`` field and the URL's extension are only hints that the API does not
promise to keep right, so file extensions and integrity checks use the bytes themselves.
"""

from __future__ import annotations

__all__ = ["IMAGE_EXTENSIONS", "SNIFF_BYTES", "extension_for", "sniff_mime"]

SNIFF_BYTES = 16
"""How many leading bytes `sniff_mime` needs to decide."""

_PNG = b"\x89PNG\r\n\x1a\n"
_JPEG = b"\xff\xd8\xff"

_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".jpe", ".webp", ".gif", ".bmp", ".tif"})
"""Suffixes treated as "an image suffix" when a caller's file name must be corrected."""


def sniff_mime(data: bytes | bytearray | memoryview) -> str | None:
    """Return ``"image/png"``, ``"image/jpeg"`` or ``"image/webp"`` from the leading bytes.

    Only the first `SNIFF_BYTES` bytes are looked at; returns ``None`` for anything else
    (including too few bytes to tell).
    """
    head = bytes(data[:SNIFF_BYTES])
    if head.startswith(_PNG):
        return "image/png"
    if head.startswith(_JPEG):
        return "image/jpeg"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def extension_for(mime: str) -> str:
    """Return the file extension (with the dot) for a supported image MIME type.

    Raises:
        ValueError: the MIME type is not PNG, JPEG or WebP.
    """
    try:
        return _EXTENSIONS[mime.split(";", 1)[0].strip().lower()]
    except KeyError:
        raise ValueError(f"no file extension for MIME type {mime!r}") from None
