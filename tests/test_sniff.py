"""Tests for image type sniffing from magic bytes."""

from __future__ import annotations

import pytest

from xai_images._results._sniff import extension_for, sniff_mime

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8L"


@pytest.mark.parametrize(
    ("data", "mime"),
    [(PNG, "image/png"), (JPEG, "image/jpeg"), (WEBP, "image/webp")],
)
def test_sniff_known_formats(data: bytes, mime: str) -> None:
    """PNG, JPEG and WebP are recognised from their leading bytes."""
    assert sniff_mime(data) == mime


@pytest.mark.parametrize(
    "data",
    [b"", b"\x89PN", b"GIF89a\x00\x00", b"RIFF\x00\x00\x00\x00WAVEfmt ", b"<html>", b"\xff\xd8"],
)
def test_sniff_rejects_other_bytes(data: bytes) -> None:
    """Anything that is not PNG, JPEG or WebP (or too short to tell) gives None."""
    assert sniff_mime(data) is None


def test_sniff_needs_only_sixteen_bytes() -> None:
    """Only the first 16 bytes matter: trailing garbage does not change the answer."""
    assert sniff_mime(WEBP[:16] + b"garbage" * 100) == "image/webp"


def test_sniff_accepts_bytearray_and_memoryview() -> None:
    """Buffers other than bytes are accepted."""
    assert sniff_mime(bytearray(PNG)) == "image/png"
    assert sniff_mime(memoryview(JPEG)) == "image/jpeg"


@pytest.mark.parametrize(
    ("mime", "ext"),
    [("image/png", ".png"), ("image/jpeg", ".jpg"), ("image/webp", ".webp"), ("IMAGE/PNG", ".png")],
)
def test_extension_for(mime: str, ext: str) -> None:
    """Each supported MIME type maps to its usual extension."""
    assert extension_for(mime) == ext


def test_extension_for_unknown_raises() -> None:
    """An unsupported MIME type is a ValueError naming it."""
    with pytest.raises(ValueError, match="image/gif"):
        extension_for("image/gif")
