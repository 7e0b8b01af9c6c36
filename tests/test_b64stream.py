"""Tests for the incremental b64_json scanner."""

from __future__ import annotations

import base64
import json
import random

import pytest

from xai_images._wire._b64stream import B64ResponseScanner


def scan(doc: bytes, sizes: list[int] | None = None) -> tuple[bytes, list[bytearray]]:
    """Feed ``doc`` in pieces of the given sizes (whole when None) and close."""
    scanner = B64ResponseScanner()
    if sizes is None:
        scanner.feed(doc)
    else:
        pos = 0
        for size in sizes:
            scanner.feed(doc[pos : pos + size])
            pos += size
        assert pos >= len(doc)
    return scanner.close()


def chunk_sizes(total: int, rng: random.Random, largest: int) -> list[int]:
    """Random chunk sizes covering ``total`` bytes."""
    sizes = []
    while total > 0:
        size = min(total, rng.randint(1, largest))
        sizes.append(size)
        total -= size
    return sizes


def make_doc(payloads: list[bytes], *, prefix: bool = False, escape_slash: bool = False) -> bytes:
    """A response document in the API's shape carrying the given images as b64_json."""
    items = []
    for payload in payloads:
        text = base64.b64encode(payload).decode()
        if prefix:
            text = "data:image/png;base64," + text
        items.append({"url": None, "b64_json": text, "mime_type": "image/png"})
    doc = json.dumps({"data": items, "usage": {"cost_in_usd_ticks": 1}})
    if escape_slash:
        doc = doc.replace("/", "\\/")
    return doc.encode()


def test_skeleton_replaces_values_with_placeholders() -> None:
    """Each b64_json string becomes {"$payload": i} and the payloads come back decoded in order."""
    images = [b"first image", b"second\x00\xff"]
    skeleton, payloads = scan(make_doc(images))
    parsed = json.loads(skeleton)
    assert [item["b64_json"] for item in parsed["data"]] == [{"$payload": 0}, {"$payload": 1}]
    assert parsed["usage"] == {"cost_in_usd_ticks": 1}
    assert [bytes(p) for p in payloads] == images


def test_text_outside_values_is_verbatim() -> None:
    """Everything outside the b64_json values is kept byte for byte."""
    doc = b'{ "b64_json" :\n "YWJj" , "x": [1, 2.50, "b64_json"], "y": "\\u00e9"}'
    skeleton, payloads = scan(doc)
    assert (
        skeleton
        == b'{ "b64_json" :\n {"$payload": 0} , "x": [1, 2.50, "b64_json"], "y": "\\u00e9"}'
    )
    assert payloads == [bytearray(b"abc")]


def test_null_stays_null() -> None:
    """A null b64_json is kept as null and adds no payload."""
    skeleton, payloads = scan(b'{"data": [{"url": "http://x/a.png", "b64_json": null}]}')
    assert json.loads(skeleton)["data"][0]["b64_json"] is None
    assert payloads == []


def test_data_uri_prefix_is_stripped() -> None:
    """A data:image/...;base64, prefix is removed before decoding."""
    skeleton, payloads = scan(make_doc([b"\x89PNG payload"], prefix=True))
    assert bytes(payloads[0]) == b"\x89PNG payload"
    assert json.loads(skeleton)["data"][0]["b64_json"] == {"$payload": 0}


def test_escaped_slashes_and_prefix() -> None:
    """Escaped slashes (\\/) in the prefix and the base64 text are understood."""
    image = bytes(range(256)) * 40  # contains '/' and '+' in base64
    _, payloads = scan(make_doc([image], prefix=True, escape_slash=True))
    assert bytes(payloads[0]) == image


def test_escaped_line_breaks_are_ignored() -> None:
    """MIME-style line breaks escaped as \\n or \\r\\n inside the value carry no data."""
    text = base64.encodebytes(bytes(range(200))).decode().replace("\n", "\r\n")
    doc = json.dumps({"b64_json": text}).encode()
    _, payloads = scan(doc)
    assert bytes(payloads[0]) == bytes(range(200))


def test_unicode_escape_of_ascii() -> None:
    """A \\u002b style escape of a base64 character decodes to that character."""
    _, payloads = scan(b'{"b64_json": "\\u002b\\u002F8A"}')
    assert bytes(payloads[0]) == base64.b64decode("+/8A")


def test_unpadded_base64_is_accepted() -> None:
    """Base64 without trailing '=' padding still decodes."""
    _, payloads = scan(b'{"b64_json": "YWJjZA"}')
    assert bytes(payloads[0]) == b"abcd"


def test_empty_value_gives_empty_payload() -> None:
    """An empty string decodes to an empty payload."""
    skeleton, payloads = scan(b'{"b64_json": ""}')
    assert payloads == [bytearray()]
    assert json.loads(skeleton) == {"b64_json": {"$payload": 0}}


@pytest.mark.parametrize(
    "value",
    [b"YW*j", b"YQ==YQ==", b"Y", b"YW Jj", b"data:image/png,abcd", b"data:image/png;base64"],
)
def test_invalid_base64_raises(value: bytes) -> None:
    """Invalid characters, misplaced padding, bad length or a non-base64 data URI are errors."""
    with pytest.raises(ValueError, match="b64_json"):
        scan(b'{"b64_json": "' + value + b'"}')


def test_unterminated_value_raises_at_close() -> None:
    """A body that ends inside a value raises ValueError at close()."""
    scanner = B64ResponseScanner()
    scanner.feed(b'{"data": [{"b64_json": "YWJj')
    with pytest.raises(ValueError, match="unterminated"):
        scanner.close()


def test_invalid_escape_raises() -> None:
    """An escape that cannot appear in base64 is an error."""
    with pytest.raises(ValueError, match="escape"):
        scan(b'{"b64_json": "YW\\"Jj"}')


def test_feed_after_close_raises() -> None:
    """The scanner cannot be reused after close()."""
    scanner = B64ResponseScanner()
    scanner.close()
    with pytest.raises(RuntimeError):
        scanner.feed(b"{}")


def test_byte_by_byte_equals_whole() -> None:
    """Feeding one byte at a time gives exactly the whole-document result."""
    doc = make_doc([bytes(range(256)) * 3, b"x" * 5], prefix=True, escape_slash=True)
    doc = doc.replace(b'"b64_json": ', b'"b64_json" \n:\t ')
    assert scan(doc, [1] * len(doc)) == scan(doc)


def test_random_chunkings_equal_whole() -> None:
    """Any chunking of many documents gives the same result as feeding them whole."""
    rng = random.Random(1234)
    for _ in range(60):
        images = [rng.randbytes(rng.randint(0, 3000)) for _ in range(rng.randint(0, 4))]
        doc = make_doc(images, prefix=rng.random() < 0.5, escape_slash=rng.random() < 0.5)
        if rng.random() < 0.3:
            doc = doc.replace(b'"b64_json": ', b'"b64_json"  :  ')
        whole = scan(doc)
        assert [bytes(p) for p in whole[1]] == images
        for largest in (3, 17, 700):
            assert scan(doc, chunk_sizes(len(doc), rng, largest)) == whole


def test_large_payload_decodes() -> None:
    """A multi-megabyte payload fed in 256 KiB chunks decodes exactly."""
    image = random.Random(7).randbytes(3 * 1024 * 1024)
    doc = make_doc([image])
    size = 256 * 1024
    _, payloads = scan(doc, [size] * (len(doc) // size + 1))
    assert payloads[0] == image
