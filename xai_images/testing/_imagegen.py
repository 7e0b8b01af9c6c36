"""Deterministic, decodable PNG, JPEG and WebP images of a chosen byte size, built once and cached.

Each image is a small picture (a colour gradient derived from a variant number) padded with
pseudo-random bytes inside a container element that decoders skip, so that a benchmark can serve
large payloads without encoding anything per request. No imaging library is used.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import math
import random
import struct
import zlib

__all__ = [
    "FORMATS",
    "MIME_TYPES",
    "image_b64",
    "image_data",
    "sample_image",
    "variant_count",
    "variant_for",
]

FORMATS = ("png", "jpeg", "webp")
MIME_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}

_SIDE = 64
_MAX_VARIANTS = 16
# Bound the memory one (format, size) pair may take in the cache.
_VARIANT_BUDGET = 64 * 1024 * 1024

_images: dict[tuple[str, int, int], bytes] = {}
_b64: dict[tuple[str, int, int, bool], str] = {}
_b64_json: dict[int, bytes] = {}  # id of a cached text -> the text as a JSON string, encoded
_padding_cache: dict[int, bytes] = {}


def sample_image(fmt: str = "png", size: int = 4096, variant: int = 0) -> bytes:
    """Real image bytes like the fake serves: an input file for edits in tests.

    Args:
        fmt: ``"png"``, ``"jpeg"`` or ``"webp"``.
        size: wanted byte size (exact when the bare picture is smaller, a few bytes short where
            a format cannot pad the remainder).
        variant: which picture; different variants of one format and size differ.

    Raises:
        ValueError: unknown format.
    """
    return image_data(fmt, size, variant % variant_count(size))


def variant_count(size: int) -> int:
    """How many distinct images are cached for one (format, size) pair."""
    return max(1, min(_MAX_VARIANTS, _VARIANT_BUDGET // max(size, 1)))


def variant_for(prompt: str, size: int) -> int:
    """Pick the image variant for a prompt (stable across runs and processes)."""
    digest = hashlib.blake2b(prompt.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % variant_count(size)


def image_data(fmt: str, size: int, variant: int) -> bytes:
    """Return the cached image bytes, building them on first use.

    Args:
        fmt: ``"png"``, ``"jpeg"`` or ``"webp"``.
        size: wanted total byte size; the result is exactly that size when the bare image is
            smaller than ``size`` (up to a few bytes short where a container cannot express the
            remainder), else the bare image.
        variant: which picture, ``0 <= variant < variant_count(size)``.

    Raises:
        ValueError: unknown format.
    """
    key = (fmt, size, variant)
    data = _images.get(key)
    if data is None:
        if fmt == "png":
            data = _png(variant, size)
        elif fmt == "jpeg":
            data = _jpeg(variant, size)
        elif fmt == "webp":
            data = _webp(variant, size)
        else:
            raise ValueError(f"unknown image format {fmt!r}: use one of {', '.join(FORMATS)}")
        _images[key] = data
    return data


def image_b64(fmt: str, size: int, variant: int, *, prefix: bool) -> str:
    """Return the cached base64 text of an image, optionally as a ``data:`` URI."""
    key = (fmt, size, variant, prefix)
    text = _b64.get(key)
    if text is None:
        text = base64.b64encode(image_data(fmt, size, variant)).decode("ascii")
        if prefix:
            text = f"data:{MIME_TYPES[fmt]};base64,{text}"
        _b64[key] = text
        _b64_json[id(text)] = b'"' + text.encode("ascii") + b'"'
    return text


def image_b64_json(value: object) -> bytes | None:
    """The JSON encoding of ``value`` when it is a text `image_b64` made (base64, or a data: URI
    of it: nothing to escape), else ``None``. Those texts are cached for the process, so their
    ids are stable."""
    return _b64_json.get(id(value))


def _padding(n: int) -> bytes:
    """Pseudo-random filler: deflating or gzipping the body must not make it small."""
    pad = _padding_cache.get(n)
    if pad is None:
        pad = random.Random(n).randbytes(n)
        _padding_cache[n] = pad
    return pad


def _colours(variant: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    digest = hashlib.sha256(f"xai-images-fake-{variant}".encode()).digest()
    return (digest[0], digest[1], digest[2]), (digest[3], digest[4], digest[5])


def _pixels(variant: int) -> list[list[tuple[int, int, int]]]:
    """A diagonal gradient between two colours: smooth, so every codec stores it compactly."""
    start, end = _colours(variant)
    span = 2 * (_SIDE - 1)
    rows = []
    for y in range(_SIDE):
        row = []
        for x in range(_SIDE):
            t = (x + y) / span
            row.append(
                (
                    round(start[0] + (end[0] - start[0]) * t),
                    round(start[1] + (end[1] - start[1]) * t),
                    round(start[2] + (end[2] - start[2]) * t),
                )
            )
        rows.append(row)
    return rows


# --- PNG -------------------------------------------------------------------------------------


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(payload, zlib.crc32(kind))
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def _png(variant: int, size: int) -> bytes:
    head, tail = _png_parts(variant)
    missing = size - len(head) - len(tail)
    if missing >= 12:
        # "paDd": ancillary, private, safe to copy; viewers skip chunks they do not know.
        head += _png_chunk(b"paDd", _padding(missing - 12))
    return head + tail


@functools.cache
def _png_parts(variant: int) -> tuple[bytes, bytes]:
    """The unpadded PNG, split where the padding chunk goes."""
    raw = bytearray()
    for row in _pixels(variant):
        # Filter type 1 (Sub): a gradient becomes runs of tiny deltas that deflate well.
        raw.append(1)
        prev = (0, 0, 0)
        for pixel in row:
            raw.extend(
                (
                    (pixel[0] - prev[0]) & 255,
                    (pixel[1] - prev[1]) & 255,
                    (pixel[2] - prev[2]) & 255,
                )
            )
            prev = pixel
    header = struct.pack(">IIBBBBB", _SIDE, _SIDE, 8, 2, 0, 0, 0)
    head = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
    tail = _png_chunk(b"IDAT", zlib.compress(bytes(raw), 9)) + _png_chunk(b"IEND", b"")
    return head, tail


# --- JPEG (baseline, 4:4:4, standard tables) -----------------------------------------------------

_Q_LUMA = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
_Q_CHROMA = (
    (17, 18, 24, 47, 99, 99, 99, 99),
    (18, 21, 26, 66, 99, 99, 99, 99),
    (24, 26, 56, 99, 99, 99, 99, 99),
    (47, 66, 99, 99, 99, 99, 99, 99),
    *((99,) * 8 for _ in range(4)),
)

_AC_SYMBOLS = [0x00, 0xF0] + [(run << 4) | size for run in range(16) for size in range(1, 11)]


def _ac_values(explicit: list[int]) -> list[int]:
    """The standard AC tables list their frequent symbols first, then the rest in order."""
    rest = sorted(set(_AC_SYMBOLS) - set(explicit))
    return explicit + rest


_DC_LUMA = ((0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0), list(range(12)))
_DC_CHROMA = ((0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0), list(range(12)))
_AC_LUMA = (
    (0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7D),
    _ac_values(
        [
            *(0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51),
            *(0x61, 0x07, 0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xA1, 0x08, 0x23, 0x42, 0xB1, 0xC1),
            *(0x15, 0x52, 0xD1, 0xF0, 0x24, 0x33, 0x62, 0x72, 0x82),
        ]
    ),
)
_AC_CHROMA = (
    (0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77),
    _ac_values(
        [
            *(0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07),
            *(0x61, 0x71, 0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xA1, 0xB1, 0xC1, 0x09),
            *(0x23, 0x33, 0x52, 0xF0, 0x15, 0x62, 0x72, 0xD1, 0x0A, 0x16, 0x24, 0x34, 0xE1, 0x25),
            0xF1,
        ]
    ),
)


def _zigzag() -> list[int]:
    order: list[int] = []
    for diagonal in range(15):
        cells = [(row, diagonal - row) for row in range(max(0, diagonal - 7), min(diagonal, 7) + 1)]
        if diagonal % 2 == 0:
            cells.reverse()
        order.extend(row * 8 + col for row, col in cells)
    return order


_ZIGZAG = _zigzag()
_DCT = [
    [
        (math.sqrt(0.5) if u == 0 else 1.0) * math.cos((2 * x + 1) * u * math.pi / 16) / 2
        for x in range(8)
    ]
    for u in range(8)
]


def _huffman_codes(table: tuple[tuple[int, ...], list[int]]) -> dict[int, tuple[int, int]]:
    """Canonical codes (value -> (code, length)) from a DHT BITS/HUFFVAL pair."""
    bits, values = table
    codes: dict[int, tuple[int, int]] = {}
    code = 0
    index = 0
    for length, count in enumerate(bits, start=1):
        for _ in range(count):
            codes[values[index]] = (code, length)
            code += 1
            index += 1
        code <<= 1
    return codes


class _BitWriter:
    def __init__(self) -> None:
        self.out = bytearray()
        self.acc = 0
        self.nbits = 0

    def put(self, code: int, length: int) -> None:
        self.acc = (self.acc << length) | code
        self.nbits += length
        while self.nbits >= 8:
            self.nbits -= 8
            byte = (self.acc >> self.nbits) & 0xFF
            self.out.append(byte)
            if byte == 0xFF:
                self.out.append(
                    0
                )  # byte stuffing: 0xFF in entropy data must not look like a marker
        self.acc &= (1 << self.nbits) - 1

    def flush(self) -> bytes:
        if self.nbits:
            self.put((1 << (8 - self.nbits)) - 1, 8 - self.nbits)
        return bytes(self.out)


def _fdct(block: list[list[float]]) -> list[list[float]]:
    rows = [[sum(_DCT[u][x] * block[y][x] for x in range(8)) for u in range(8)] for y in range(8)]
    return [[sum(_DCT[v][y] * rows[y][u] for y in range(8)) for u in range(8)] for v in range(8)]


def _category(value: int) -> tuple[int, int]:
    magnitude = abs(value).bit_length()
    bits = value if value >= 0 else value + (1 << magnitude) - 1
    return magnitude, bits


def _jpeg_segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">HH", marker, len(payload) + 2) + payload


def _jpeg(variant: int, size: int) -> bytes:
    head, tail = _jpeg_parts(variant)
    missing = size - len(head) - len(tail)
    if missing >= 4:
        head += _jpeg_padding(missing)
    return head + tail


@functools.cache
def _jpeg_parts(variant: int) -> tuple[bytes, bytes]:
    """The unpadded JPEG, split before the scan: padding COM segments go there."""
    pixels = _pixels(variant)
    planes: list[list[list[float]]] = [[], [], []]
    for row in pixels:
        ys, cbs, crs = [], [], []
        for r, g, b in row:
            ys.append(0.299 * r + 0.587 * g + 0.114 * b - 128)
            cbs.append(-0.168736 * r - 0.331264 * g + 0.5 * b)
            crs.append(0.5 * r - 0.418688 * g - 0.081312 * b)
        planes[0].append(ys)
        planes[1].append(cbs)
        planes[2].append(crs)
    quant = (_Q_LUMA, _Q_CHROMA, _Q_CHROMA)
    dc_codes = (_huffman_codes(_DC_LUMA), _huffman_codes(_DC_CHROMA))
    ac_codes = (_huffman_codes(_AC_LUMA), _huffman_codes(_AC_CHROMA))
    writer = _BitWriter()
    previous_dc = [0, 0, 0]
    for by in range(0, _SIDE, 8):
        for bx in range(0, _SIDE, 8):
            for comp in range(3):
                table = 0 if comp == 0 else 1
                block = [planes[comp][by + y][bx : bx + 8] for y in range(8)]
                coeffs = _fdct(block)
                q = quant[comp]
                flat = [round(coeffs[i // 8][i % 8] / q[i // 8][i % 8]) for i in _ZIGZAG]
                diff = flat[0] - previous_dc[comp]
                previous_dc[comp] = flat[0]
                cat, bits = _category(diff)
                writer.put(*dc_codes[table][cat])
                if cat:
                    writer.put(bits, cat)
                run = 0
                for value in flat[1:]:
                    if value == 0:
                        run += 1
                        continue
                    while run > 15:
                        writer.put(*ac_codes[table][0xF0])
                        run -= 16
                    cat, bits = _category(value)
                    writer.put(*ac_codes[table][(run << 4) | cat])
                    writer.put(bits, cat)
                    run = 0
                if run:
                    writer.put(*ac_codes[table][0x00])
    scan = writer.flush()

    head = b"\xff\xd8" + _jpeg_segment(0xFFE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
    dqt = b""
    for ident, table_q in enumerate((_Q_LUMA, _Q_CHROMA)):
        dqt += bytes([ident]) + bytes(table_q[i // 8][i % 8] for i in _ZIGZAG)
    head += _jpeg_segment(0xFFDB, dqt)
    sof = struct.pack(">BHHB", 8, _SIDE, _SIDE, 3) + bytes([1, 0x11, 0, 2, 0x11, 1, 3, 0x11, 1])
    head += _jpeg_segment(0xFFC0, sof)
    dht = b""
    for cls_id, (bits_, values) in (
        (0x00, _DC_LUMA),
        (0x10, _AC_LUMA),
        (0x01, _DC_CHROMA),
        (0x11, _AC_CHROMA),
    ):
        dht += bytes([cls_id, *bits_]) + bytes(values)
    head += _jpeg_segment(0xFFC4, dht)
    sos = _jpeg_segment(0xFFDA, bytes([3, 1, 0x00, 2, 0x11, 3, 0x11, 0, 63, 0]))
    return head, sos + scan + b"\xff\xd9"


def _jpeg_padding(total: int) -> bytes:
    """COM segments adding up to exactly ``total`` bytes (each is 4 bytes of header + data)."""
    pad = _padding(total)
    parts = []
    offset = 0
    remaining = total
    while remaining:
        take = min(remaining, 4 + 65533)
        if 0 < remaining - take < 4:
            take = remaining - 4  # leave room for one more segment header
        data_len = take - 4
        parts.append(struct.pack(">HH", 0xFFFE, data_len + 2) + pad[offset : offset + data_len])
        offset += data_len
        remaining -= take
    return b"".join(parts)


# --- WebP (lossless VP8L, extended layout so an unknown padding chunk is allowed) -----------------


def _riff_chunk(kind: bytes, payload: bytes) -> bytes:
    odd = b"\x00" if len(payload) % 2 else b""
    return kind + struct.pack("<I", len(payload)) + payload + odd


def _webp(variant: int, size: int) -> bytes:
    (red, green, blue), _ = _colours(variant)
    acc = 0
    nbits = 0

    def put(value: int, count: int) -> None:
        nonlocal acc, nbits
        acc |= value << nbits
        nbits += count

    put(_SIDE - 1, 14)
    put(_SIDE - 1, 14)
    put(0, 1)  # alpha_is_used
    put(0, 3)  # version
    put(0, 1)  # no transform
    put(0, 1)  # no colour cache
    put(0, 1)  # no meta prefix codes
    # One single-symbol prefix code per channel: every pixel is that colour and costs 0 bits.
    for symbol in (green, red, blue, 255, 0):
        put(1, 1)  # simple code
        put(0, 1)  # one symbol
        put(1, 1)  # symbol coded on 8 bits
        put(symbol, 8)
    vp8l = b"\x2f" + acc.to_bytes((nbits + 7) // 8, "little")
    vp8x = (
        struct.pack("<I", 0) + (_SIDE - 1).to_bytes(3, "little") + (_SIDE - 1).to_bytes(3, "little")
    )
    body = b"WEBP" + _riff_chunk(b"VP8X", vp8x) + _riff_chunk(b"VP8L", vp8l)
    missing = size - 8 - len(body)
    if missing >= 8:
        pad_len = missing - 8
        pad_len -= pad_len % 2  # RIFF chunks are padded to even sizes anyway
        body += _riff_chunk(b"PADx", _padding(pad_len))
    return b"RIFF" + struct.pack("<I", len(body)) + body
