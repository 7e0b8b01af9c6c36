"""Files written beside the images (manifest, gallery, their temporary files) never follow links."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from xai_images import AsyncClient, GenerateRequest, SaveError, XAIImagesError
from xai_images._bulk._manifest import ManifestWriter
from xai_images._results._safefs import atomic_write, open_append, open_read
from xai_images._ui._cli import main
from xai_images.bulk import FileRecord, ManifestRecord, load_manifest, write_gallery
from xai_images.testing import FakeXAIServer

pytestmark = pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")

VICTIM_TEXT = b"precious data, not to be touched\n"


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file outside the output directory that a planted link points at."""
    path = tmp_path / "elsewhere" / "victim.txt"
    path.parent.mkdir()
    path.write_bytes(VICTIM_TEXT)
    return path


@pytest.fixture
def out(tmp_path: Path) -> Path:
    path = tmp_path / "out"
    path.mkdir()
    return path


@pytest.fixture
def fake_xai_server_options() -> dict[str, Any]:
    """Small images keep these runs quick."""
    return {"image_bytes": 256}


def record(item_id: str) -> ManifestRecord:
    return ManifestRecord(id=item_id, kind="generate", request={"prompt": "p"}, status="failed")


def plant(link: Path, victim: Path, content: bytes) -> None:
    victim.write_bytes(content)
    link.symlink_to(victim)


def read(path: Path) -> bytes:
    return path.read_bytes()


def untouched(victim: Path) -> bool:
    return victim.read_bytes() == VICTIM_TEXT


async def test_manifest_writer_refuses_a_link_at_its_name(out: Path, victim: Path) -> None:
    """Opening a manifest that is a symbolic link raises SaveError naming it; the target is kept."""
    manifest = out / "manifest.jsonl"
    manifest.symlink_to(victim)
    writer = ManifestWriter(manifest)
    with pytest.raises(SaveError, match="symbolic link") as info:
        await writer.open()
    assert info.value.path == manifest
    assert untouched(victim)


async def test_manifest_writer_refuses_a_dangling_link(out: Path, tmp_path: Path) -> None:
    """A link to a file that does not exist yet is refused too, and nothing is created there."""
    manifest = out / "manifest.jsonl"
    target = tmp_path / "elsewhere-new.txt"
    manifest.symlink_to(target)
    with pytest.raises(SaveError):
        await ManifestWriter(manifest).open()
    assert not target.exists()


async def test_manifest_writer_torn_line_repair_never_reaches_the_target(
    out: Path, victim: Path
) -> None:
    """A victim without a final newline (which the writer would truncate) stays whole."""
    plant(out / "manifest.jsonl", victim, b"no newline at the end")
    with pytest.raises(SaveError):
        await ManifestWriter(out / "manifest.jsonl").open()
    assert read(victim) == b"no newline at the end"


def test_manifest_reader_refuses_a_link(out: Path, victim: Path) -> None:
    """load_manifest refuses a linked manifest with SaveError, an XAIImagesError."""
    (out / "manifest.jsonl").symlink_to(victim)
    with pytest.raises(XAIImagesError, match="manifest"):
        load_manifest(out / "manifest.jsonl")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_manifest_reader_refuses_a_fifo(out: Path) -> None:
    """A FIFO at the manifest's name is refused at once instead of blocking the reader."""
    os.mkfifo(out / "manifest.jsonl")
    with pytest.raises(SaveError, match="regular file"):
        load_manifest(out / "manifest.jsonl")


async def test_batch_refuses_a_linked_manifest_before_sending(
    client: AsyncClient, server: FakeXAIServer, out: Path, victim: Path
) -> None:
    """A bulk job whose manifest name is a link fails with SaveError; nothing is sent or written."""
    (out / "manifest.jsonl").symlink_to(victim)
    with pytest.raises(SaveError):
        await client.bulk([GenerateRequest("a cat")], output_dir=out).collect()
    assert server.ledger.requests == []
    assert untouched(victim)


async def test_batch_with_a_clean_manifest_still_appends(client: AsyncClient, out: Path) -> None:
    """The safe open keeps appending: a second run adds to the first run's manifest."""
    await client.bulk([GenerateRequest("a cat")], output_dir=out).collect()
    await client.bulk([GenerateRequest("a dog")], output_dir=out).collect()
    assert len(load_manifest(out / "manifest.jsonl")) == 2
    assert not (out / "manifest.jsonl").is_symlink()


def write_manifest(out: Path) -> None:
    line = json.dumps(record("a").to_json()) + "\n"
    (out / "manifest.jsonl").write_text(line, encoding="utf-8")


def test_gallery_replaces_a_link_at_index_html(out: Path, victim: Path) -> None:
    """A link planted at index.html is replaced by the page; the file it pointed at is kept."""
    write_manifest(out)
    (out / "index.html").symlink_to(victim)
    page = write_gallery(out)
    assert not page.is_symlink()
    assert page.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert untouched(victim)


def test_gallery_ignores_links_at_temporary_names(out: Path, victim: Path) -> None:
    """Links at the old fixed temporary name and look-alikes are never written through."""
    write_manifest(out)
    planted = [out / ".index.html.tmp", out / "index.html.tmp", out / ".index.html.tmp.tmp"]
    for link in planted:
        link.symlink_to(victim)
    write_gallery(out)
    assert untouched(victim)
    assert all(link.is_symlink() for link in planted)  # left alone, not followed


def test_gallery_leaves_no_temporary_file(out: Path) -> None:
    """After writing, only index.html and the manifest remain: the random temp file was moved."""
    write_manifest(out)
    write_gallery(out)
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "manifest.jsonl"]


def test_gallery_refuses_a_linked_manifest(out: Path, victim: Path) -> None:
    """write_gallery reads the manifest without following a link, raising SaveError."""
    (out / "manifest.jsonl").symlink_to(victim)
    with pytest.raises(SaveError):
        write_gallery(out)
    assert not (out / "index.html").exists()


def test_cli_gallery_reports_a_linked_manifest(
    out: Path, victim: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The gallery command turns the refusal into a typed error message and a failure exit."""
    (out / "manifest.jsonl").symlink_to(victim)
    assert main(["gallery", str(out)]) != 0
    assert "SaveError" in capsys.readouterr().err
    assert untouched(victim)


def test_atomic_write_creates_a_file_readable_like_others(out: Path) -> None:
    """The final file is a regular file with the process's default permissions, not 0600."""
    path = atomic_write(out / "page.html", b"hello")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
    assert path.read_bytes() == b"hello"


def test_atomic_write_error_is_typed_and_cleans_up(out: Path) -> None:
    """Writing into a missing directory raises SaveError naming the path."""
    with pytest.raises(SaveError) as info:
        atomic_write(out / "missing" / "page.html", b"x")
    assert info.value.path == out / "missing" / "page.html"


def test_open_append_and_read_work_on_regular_files(out: Path) -> None:
    """The safe openers append to and read an ordinary file."""
    path = out / "f.txt"
    with open_append(path) as fh:
        fh.write(b"one\n")
    with open_append(path) as fh:
        fh.write(b"two\n")
    with open_read(path) as fh:
        assert fh.read() == b"one\ntwo\n"


def test_open_append_refuses_a_directory(out: Path) -> None:
    """A directory at the name is not a regular file: SaveError or the OS's own refusal."""
    (out / "d").mkdir()
    with pytest.raises((SaveError, IsADirectoryError)):
        open_append(out / "d")


async def test_cli_batch_refuses_a_linked_manifest(
    server: FakeXAIServer,
    out: Path,
    victim: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """xai-images batch with a link at the manifest's name fails typed and sends nothing."""
    monkeypatch.setenv("XAI_API_KEY", server.api_key)
    monkeypatch.setenv("XAI_BASE_URL", server.base_url)
    jobs = out.parent / "jobs.jsonl"
    plant(out / "manifest.jsonl", victim, VICTIM_TEXT)
    write_jobs(jobs)
    argv = ["batch", str(jobs), "-o", str(out), "--plain"]
    assert await asyncio.to_thread(main, argv) != 0
    assert "SaveError" in capsys.readouterr().err
    assert untouched(victim)
    assert server.ledger.api_requests() == []


def write_jobs(path: Path) -> None:
    path.write_text('{"prompt": "a cat"}\n', encoding="utf-8")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_gallery_does_not_hang_on_a_fifo_named_like_an_image(out: Path) -> None:
    """A FIFO where an image should be gets no dimensions instead of blocking the page."""
    line = json.dumps(
        ManifestRecord(
            id="a",
            kind="generate",
            request={"prompt": "p"},
            status="ok",
            files=(FileRecord("a-0.png", 10, "ab" * 32),),
        ).to_json()
    )
    (out / "manifest.jsonl").write_text(line + "\n", encoding="utf-8")
    os.mkfifo(out / "a-0.png")
    page = write_gallery(out)
    assert "a-0.png" in page.read_text(encoding="utf-8")
