"""The JSONL manifest: append, crash safety, override on load, integrity checks."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from xai_images._bulk._manifest import ManifestWriter, PendingImage, file_sha256, read_manifest
from xai_images.bulk import FileRecord, ManifestRecord, load_manifest


def record(item_id: str, status: str = "ok", **kwargs: Any) -> ManifestRecord:
    return ManifestRecord(
        id=item_id, kind="generate", request={"prompt": f"p {item_id}"}, status=status, **kwargs
    )


async def test_records_round_trip(tmp_path: Path) -> None:
    """Every field written is read back equal."""
    original = record(
        "a",
        files=(FileRecord("a-0.png", 10, "ab" * 32, "image/png", "revised"),),
        request_id="req-1",
        attempts=2,
        cost_in_usd_ticks=200_000_000,
        billed=True,
        pending=(PendingImage(1, "http://h/i.png", None),),
        line=7,
        model="grok-imagine-image",
        finished_at=1700000000.5,
    )
    async with ManifestWriter(tmp_path / "m.jsonl") as writer:
        await writer.write(original)
    assert load_manifest(tmp_path / "m.jsonl") == {"a": original}


async def test_each_line_is_on_disk_before_write_returns(tmp_path: Path) -> None:
    """A written record is readable by another reader while the writer is still open."""
    path = tmp_path / "m.jsonl"
    async with ManifestWriter(path) as writer:
        await writer.write(record("a"))
        assert list(load_manifest(path)) == ["a"]


async def test_partial_last_line_is_ignored(tmp_path: Path) -> None:
    """A line cut off by a crash is ignored on load; the complete lines before it count."""
    path = tmp_path / "m.jsonl"
    async with ManifestWriter(path) as writer:
        await writer.write(record("a"))
    path.write_bytes(path.read_bytes() + b'{"id": "b", "status": "o')
    assert list(load_manifest(path)) == ["a"]


async def test_appending_after_a_crash_truncates_the_torn_line(tmp_path: Path) -> None:
    """Reopening for append drops the torn line, so the next record starts on a line of its own."""
    path = tmp_path / "m.jsonl"
    path.write_bytes(json.dumps(record("a").to_json()).encode() + b'\n{"id": "b", "sta')
    async with ManifestWriter(path) as writer:
        await writer.write(record("c"))
    lines = path.read_bytes().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["a", "c"]


async def test_later_line_overrides_earlier_for_same_id(tmp_path: Path) -> None:
    """Load keeps the latest record of each id, so a re-run only ever appends."""
    path = tmp_path / "m.jsonl"
    async with ManifestWriter(path) as writer:
        await writer.write(record("a", "failed", error="boom"))
        await writer.write(record("b"))
    async with ManifestWriter(path) as writer:
        await writer.write(record("a", "ok"))
    loaded = load_manifest(path)
    assert loaded["a"].status == "ok"
    assert list(loaded) == ["a", "b"]


async def test_unreadable_middle_line_is_skipped_with_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A corrupt line in the middle is skipped (logged), not fatal."""
    path = tmp_path / "m.jsonl"
    good = json.dumps(record("a").to_json())
    path.write_text(f"{good}\nnot json\n[1, 2]\n{json.dumps(record('b').to_json())}\n")
    with caplog.at_level(logging.WARNING, logger="xai_images"):
        ids = [r.id for r in read_manifest(path)]
    assert ids == ["a", "b"]
    assert "line 2" in caplog.text


def test_missing_manifest_loads_empty(tmp_path: Path) -> None:
    """A job that never ran has an empty manifest."""
    assert load_manifest(tmp_path / "none.jsonl") == {}


def test_unknown_fields_are_ignored(tmp_path: Path) -> None:
    """Records written by a newer version (extra keys) still load."""
    path = tmp_path / "m.jsonl"
    data = record("a").to_json() | {"future": 1}
    data["files"] = [{"path": "a-0.png", "bytes": 3, "sha256": "x", "new": True}]
    path.write_text(json.dumps(data) + "\n")
    assert load_manifest(path)["a"].files[0].path == "a-0.png"


def test_files_intact_checks_size_and_optionally_hash(tmp_path: Path) -> None:
    """Intact means every file exists with the recorded size (and hash when asked)."""
    (tmp_path / "a-0.png").write_bytes(b"abc")
    good = FileRecord("a-0.png", 3, file_sha256(tmp_path / "a-0.png"))
    assert record("a", files=(good,)).files_intact(tmp_path, check_sha256=True)
    assert not record("a", files=(FileRecord("a-0.png", 4, good.sha256),)).files_intact(tmp_path)
    tampered = FileRecord("a-0.png", 3, "0" * 64)
    assert record("a", files=(tampered,)).files_intact(tmp_path)
    assert not record("a", files=(tampered,)).files_intact(tmp_path, check_sha256=True)
    assert not record("a", files=(FileRecord("gone.png", 3, "x"),)).files_intact(tmp_path)


async def test_aclose_is_idempotent(tmp_path: Path) -> None:
    """Closing twice is harmless and the file stays readable."""
    writer = ManifestWriter(tmp_path / "m.jsonl")
    await writer.write(record("a"))
    await writer.aclose()
    await writer.aclose()
    assert list(load_manifest(tmp_path / "m.jsonl")) == ["a"]
