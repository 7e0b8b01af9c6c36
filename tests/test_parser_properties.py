"""Property tests of the manifest reader and the streaming base64 scanner: no input crashes them."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from xai_images._bulk._manifest import ManifestWriter
from xai_images._wire._b64stream import PAYLOAD_KEY, B64ResponseScanner
from xai_images.bulk import FileRecord, ManifestRecord, load_manifest

_settings = settings(max_examples=100, deadline=None)

# -- the manifest reader ----------------------------------------------------------------------

_text = st.text(st.characters() | st.integers(0xD800, 0xDFFF).map(chr), max_size=12)
_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | _text
)
_json = st.recursive(
    _leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3)
)
_record_keys = st.sampled_from(
    [
        "id",
        "kind",
        "status",
        "request",
        "files",
        "pending",
        "attempts",
        "cost_in_usd_ticks",
        "line",
        "finished_at",
        "billed",
        "error",
    ]
)
# Objects shaped like records, with any values: the from_json conversions see every type.
_record_like = st.dictionaries(_record_keys, _json, max_size=8)
_garbage_line = st.one_of(
    st.binary(max_size=100),
    _json.map(lambda v: json.dumps(v).encode()),
    _record_like.map(lambda v: json.dumps(v).encode()),
    st.integers(1, 3000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.integers(4400, 6000).map(lambda d: b'{"id": "x", "status": "ok", "attempts": ' + b"9" * d),
    st.just(b'{"id": "x", "status": "ok", "attempts": 1e999}'),
    st.just(b'{"id": "x", "status": "ok", "finished_at": ' + b"9" * 400 + b"}"),
).map(lambda line: line.replace(b"\n", b" "))


def valid_record(item_id: str) -> ManifestRecord:
    return ManifestRecord(
        id=item_id,
        kind="generate",
        request={"prompt": f"prompt {item_id}"},
        status="ok",
        files=(FileRecord(f"{item_id}-0.png", 10, "ab" * 32, "image/png"),),
        attempts=1,
    )


def encode(record: ManifestRecord) -> bytes:
    return json.dumps(record.to_json()).encode() + b"\n"


@_settings
@given(
    ids=st.lists(st.from_regex(r"[a-z]{1,6}", fullmatch=True), unique=True, max_size=5),
    garbage=st.lists(_garbage_line, max_size=6),
    data=st.data(),
)
def test_load_manifest_keeps_every_valid_record_among_garbage(
    tmp_path_factory: pytest.TempPathFactory, ids: list[str], garbage: list[bytes], data: Any
) -> None:
    """Garbage lines between valid records are skipped; each valid record is loaded as written."""
    for line in garbage:
        # A random line that happens to be a readable record would rightly be loaded.
        assume(b'"id"' not in line or b'"status"' not in line)
    lines = [encode(valid_record(i)) for i in ids] + [g + b"\n" for g in garbage]
    order = data.draw(st.permutations(lines))
    path = tmp_path_factory.mktemp("m") / "manifest.jsonl"
    path.write_bytes(b"".join(order))
    assert load_manifest(path) == {i: valid_record(i) for i in ids}


@_settings
@given(lines=st.lists(_garbage_line, max_size=8), tail=st.binary(max_size=50))
def test_load_manifest_never_raises(
    tmp_path_factory: pytest.TempPathFactory, lines: list[bytes], tail: bytes
) -> None:
    """Any lines, and any torn last line, give a dict of records and no exception."""
    path = tmp_path_factory.mktemp("m") / "manifest.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines) + tail.replace(b"\n", b""))
    loaded = load_manifest(path)
    assert all(isinstance(r, ManifestRecord) for r in loaded.values())


@_settings
@given(
    ids=st.lists(st.from_regex(r"[a-z]{1,6}", fullmatch=True), unique=True, min_size=1, max_size=4),
    cut=st.integers(min_value=1),
)
def test_torn_last_line_is_ignored_and_repaired_on_append(
    tmp_path_factory: pytest.TempPathFactory, ids: list[str], cut: int
) -> None:
    """A last record cut anywhere is ignored; reopening for append drops it cleanly."""
    *whole, last = [encode(valid_record(i)) for i in ids]
    torn = last[: cut % len(last)]  # never the whole line with its newline
    path = tmp_path_factory.mktemp("m") / "manifest.jsonl"
    path.write_bytes(b"".join(whole) + torn)
    expected = {i: valid_record(i) for i in ids[:-1]}
    assert load_manifest(path) == expected
    writer = ManifestWriter(path)
    writer._fh = writer._open_sync()  # the repair the async open() runs in a thread
    writer.close_sync()
    assert path.read_bytes() == b"".join(whole)


async def test_writer_round_trips_lone_surrogates(tmp_path: Path) -> None:
    """A record holding a lone surrogate (say, from a server's message) is written and read back."""
    record = ManifestRecord(
        id="a", kind="generate", request={"prompt": "p"}, status="failed", error="bad \ud800 text"
    )
    async with ManifestWriter(tmp_path / "m.jsonl") as writer:
        await writer.write(record)
    assert load_manifest(tmp_path / "m.jsonl") == {"a": record}


# -- the base64 scanner -----------------------------------------------------------------------


@st.composite
def b64_answers(draw: Any) -> tuple[bytes, dict[str, Any], list[bytes]]:
    """A JSON answer with b64_json values written in the ways encoders write them.

    Returns the raw body, the answer it was made from and the decoded payloads in order.
    """
    images = []
    payloads = []
    for _ in range(draw(st.integers(0, 3))):
        payload = draw(st.binary(max_size=64))
        text = base64.b64encode(payload).decode()
        if draw(st.booleans()):
            text = text.rstrip("=")  # some encoders drop the padding
        if draw(st.booleans()):
            # MIME-style line wrapping: JSON encodes the breaks as \n escapes.
            wrap = draw(st.integers(4, 16))
            text = "\n".join(text[i : i + wrap] for i in range(0, len(text), wrap))
        if draw(st.booleans()):
            text = "data:image/png;base64," + text
        image: dict[str, Any] = {"b64_json": text}
        if draw(st.booleans()):
            image["revised_prompt"] = draw(_text)
        if draw(st.booleans()):
            image["note"] = "b64_json"  # the key's name as a value is not a key
        images.append(image)
        payloads.append(payload)
    answer: dict[str, Any] = {"data": images, "usage": {"cost_in_usd_ticks": draw(st.integers())}}
    if draw(st.booleans()):
        answer["b64_json"] = None  # a null value is kept verbatim
    # Keys that contain the key's text behind an escaped quote or a backslash: only a real
    # "b64_json" key is decoded (an escaped-quote key once was, and refused the answer).
    tricky = st.sampled_from(['"b64_json', 'x\\"b64_json', "a\\", '\\"b64_json"', "b64_json\\"])
    extra = draw(st.dictionaries(_text, _json, max_size=3))
    extra.update(draw(st.dictionaries(tricky, st.text(max_size=8), max_size=2)))
    answer.update({k: v for k, v in extra.items() if k not in answer})
    body = json.dumps(answer, indent=draw(st.sampled_from([None, 1])))
    if draw(st.booleans()):
        body = body.replace("/", "\\/")  # a JSON encoder may escape every slash
    return body.encode(), answer, payloads


def feed_in_chunks(body: bytes, cuts: list[int]) -> tuple[bytes, list[bytes]]:
    scanner = B64ResponseScanner()
    points = sorted({c % (len(body) + 1) for c in cuts} | {0, len(body)})
    for start, stop in itertools.pairwise(points):
        scanner.feed(body[start:stop])
    return scanner.close()


def expected_payload(value: str) -> bytes:
    if value.startswith("data:"):
        value = value.split(",", 1)[1]
    value = value.replace("\n", "")
    return base64.b64decode(value + "=" * (-len(value) % 4))


@_settings
@given(answer=b64_answers(), cuts=st.lists(st.integers(min_value=0), max_size=12))
def test_scanner_matches_json_loads_at_any_chunk_boundaries(
    answer: tuple[bytes, dict[str, Any], list[bytes]], cuts: list[int]
) -> None:
    """Fed in any pieces, the skeleton plus payloads equal json.loads plus b64decode."""
    body, _, payloads = answer
    parsed = json.loads(body)  # the reference reading (it joins surrogate pairs, for one)
    skeleton, decoded = feed_in_chunks(body, cuts)
    assert decoded == payloads
    rebuilt = json.loads(skeleton)
    for image, original in zip(rebuilt["data"], parsed["data"], strict=True):
        index = image.pop("b64_json")[PAYLOAD_KEY]
        assert decoded[index] == expected_payload(original["b64_json"])
        assert image == {k: v for k, v in original.items() if k != "b64_json"}
    assert {k: v for k, v in rebuilt.items() if k != "data"} == {
        k: v for k, v in parsed.items() if k != "data"
    }


_b64ish = st.sampled_from([b'"b64_json"', b":", b'"', b"\\", b"\\u0041", b"=", b"data:", b","])
_garbage_body = st.lists(st.binary(max_size=20) | _b64ish, max_size=30).map(b"".join)


@_settings
@given(body=_garbage_body, cuts=st.lists(st.integers(min_value=0), max_size=10))
def test_scanner_raises_only_value_error_on_garbage(body: bytes, cuts: list[int]) -> None:
    """Any bytes in any pieces either scan or raise ValueError, the documented error."""
    with contextlib.suppress(ValueError):
        feed_in_chunks(body, cuts)


@_settings
@given(answer=b64_answers(), cut=st.integers(min_value=0))
def test_scanner_on_a_truncated_answer_raises_value_error_or_scans(
    answer: tuple[bytes, dict[str, Any], list[bytes]], cut: int
) -> None:
    """An answer cut anywhere never raises anything but ValueError."""
    body = answer[0]
    with contextlib.suppress(ValueError):
        feed_in_chunks(body[: cut % (len(body) + 1)], [cut // 2])


@pytest.mark.parametrize("cut", range(40))
def test_scanner_skips_a_key_ending_in_an_escaped_quote(cut: int) -> None:
    """{"\\"b64_json": "..."} is an ordinary key, not the b64_json one, wherever the body is cut."""
    body = json.dumps({'"b64_json': "not base64!", "b64_json": "QUJD"}).encode()
    skeleton, payloads = feed_in_chunks(body, [cut])
    assert payloads == [b"ABC"]
    assert json.loads(skeleton) == {'"b64_json': "not base64!", "b64_json": {PAYLOAD_KEY: 0}}
