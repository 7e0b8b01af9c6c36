"""Saving images: naming, sniffed extensions, base64, collisions, disk errors, save_all."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from xai_images import (
    AsyncClient,
    DownloadOptions,
    FileCollisionError,
    ImageBlockedError,
    ImageExpiredError,
    ImagesResponse,
    RetryPolicy,
    SaveError,
    ValidationError,
)
from xai_images._results._files import PartFile as _PartFile
from xai_images.testing import FakeXAIServer, Reply

IMAGE_BYTES = 50_000


pytestmark = pytest.mark.usefixtures("xai_instant_retries")


@pytest.fixture
def fake_xai_server_options() -> dict[str, Any]:
    """Images large enough to stream in chunks."""
    return {"image_bytes": IMAGE_BYTES}


@pytest.fixture
def xai_client_options() -> dict[str, Any]:
    """Short stall timeout, one download retry."""
    return {"download": DownloadOptions(stall_timeout=0.3, retry=RetryPolicy(max_attempts=2))}


async def generate(client: AsyncClient, n: int = 1, fmt: str = "url") -> ImagesResponse:
    return await client.images.generate("a fox in snow", n=n, response_format=fmt)


def assert_clean(directory: Path, *, finals: int = 0) -> None:
    """No temporary files anywhere under ``directory`` and exactly ``finals`` final files."""
    files = [p for p in directory.rglob("*") if p.is_file()]
    assert [p for p in files if p.name.endswith(".part")] == []
    assert len(files) == finals


@pytest.mark.parametrize("prefix", [False, True])
async def test_b64_image_saved_with_and_without_prefix(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path, prefix: bool
) -> None:
    """b64_json images, with or without a data: prefix, are decoded to the exact bytes."""
    server.settings.b64_prefix = prefix
    resp = await generate(client, fmt="b64_json")
    saved = await resp.data[0].save(tmp_path)
    assert server.ledger.images_downloaded == 0
    reference = await generate(client)  # same prompt: the same image, served by URL
    expected = await reference.data[0].read()
    assert saved.path.read_bytes() == expected
    assert saved.sha256 == hashlib.sha256(expected).hexdigest()
    assert (saved.source, saved.url, saved.bytes) == ("b64_json", None, len(expected))


@pytest.mark.parametrize(
    ("fmt", "ext", "mime"),
    [("png", ".png", "image/png"), ("jpeg", ".jpg", "image/jpeg"), ("webp", ".webp", "image/webp")],
)
@pytest.mark.parametrize("source", ["url", "b64_json"])
async def test_extension_comes_from_the_bytes(
    client: AsyncClient,
    server: FakeXAIServer,
    tmp_path: Path,
    fmt: str,
    ext: str,
    mime: str,
    source: str,
) -> None:
    """PNG, JPEG and WebP are named by their sniffed type, even when the URL says otherwise."""
    server.settings.image_format = fmt
    server.settings.url_ext = "gif"
    resp = await generate(client, fmt=source)
    saved = await resp.data[0].save(tmp_path)
    assert saved.path == tmp_path / f"{resp.request_id}-0{ext}"
    assert saved.mime_type == mime
    assert saved.path.exists()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("fox", "fox.png"),
        ("fox.png", "fox.png"),
        ("fox.jpg", "fox.png"),
        ("fox.JPEG", "fox.png"),
        ("fox.v2", "fox.v2.png"),
        ("sub/dir/fox", "sub/dir/fox.png"),
    ],
)
async def test_save_path_suffix_is_corrected(
    client: AsyncClient, tmp_path: Path, name: str, expected: str
) -> None:
    """save(path) adds a missing extension, fixes a wrong image one, and creates parents."""
    resp = await generate(client, fmt="b64_json")
    saved = await resp.data[0].save(tmp_path / name)
    assert saved.path == tmp_path / expected
    assert_clean(tmp_path, finals=1)


async def test_save_into_existing_directory(client: AsyncClient, tmp_path: Path) -> None:
    """save(directory) names the file <request_id>-<index>.<ext> inside it."""
    resp = await generate(client)
    saved = await resp.data[0].save(tmp_path)
    assert saved.path == tmp_path / f"{resp.request_id}-0.png"


async def test_save_to_trailing_separator_creates_directory(
    client: AsyncClient, tmp_path: Path
) -> None:
    """A path ending with a separator is a directory to create, not a file name."""
    resp = await generate(client)
    saved = await resp.data[0].save(f"{tmp_path}/new/")
    assert saved.path == tmp_path / "new" / f"{resp.request_id}-0.png"


async def test_response_save_writes_all_images(client: AsyncClient, tmp_path: Path) -> None:
    """resp.save(directory) saves every image in order with distinct content."""
    resp = await generate(client, n=4)
    saved = await resp.save(tmp_path / "out")
    assert [s.index for s in saved] == [0, 1, 2, 3]
    assert [s.path.name for s in saved] == [f"{resp.request_id}-{i}.png" for i in range(4)]
    assert all(s.path.stat().st_size == s.bytes == IMAGE_BYTES for s in saved)
    assert_clean(tmp_path, finals=4)


async def test_save_all_name_pattern(client: AsyncClient, tmp_path: Path) -> None:
    """The name pattern is formatted per image and the extension appended."""
    resp = await generate(client, n=2, fmt="b64_json")
    saved = await resp.save(tmp_path, name="fox-{index:02d}")
    assert [s.path.name for s in saved] == ["fox-00.png", "fox-01.png"]


@pytest.mark.parametrize("name", ["fox", "{nope}-{index}", "a/{index}"])
async def test_save_all_rejects_bad_names(client: AsyncClient, tmp_path: Path, name: str) -> None:
    """Patterns that collide, use unknown fields or contain directories are refused up front."""
    resp = await generate(client, n=2)
    with pytest.raises(ValidationError, match="name"):
        await resp.save(tmp_path, name=name)
    assert_clean(tmp_path)


async def test_save_all_failure_keeps_others_and_raises(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """If one image fails, the others are still saved completely and the error is raised."""
    resp = await generate(client, n=3)
    server.enqueue_download(Reply.error(404))
    with pytest.raises(ImageExpiredError):
        await resp.save(tmp_path)
    assert_clean(tmp_path, finals=2)


async def test_blocked_image_cannot_be_saved(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """A moderated image raises ImageBlockedError and writes nothing."""
    server.settings.moderation = "blocked"
    resp = await generate(client)
    with pytest.raises(ImageBlockedError):
        await resp.data[0].save(tmp_path / "x")
    assert_clean(tmp_path)


# -- collisions ---------------------------------------------------------------------------------


async def test_fail_policy_refuses_existing_file(client: AsyncClient, tmp_path: Path) -> None:
    """on_exists='fail' raises FileCollisionError and leaves the existing file untouched."""
    target = tmp_path / "fox.png"
    target.write_bytes(b"something else")
    resp = await generate(client)
    with pytest.raises(FileCollisionError, match="different file") as info:
        await resp.data[0].save(target)
    assert info.value.path == target
    assert target.read_bytes() == b"something else"
    assert_clean(tmp_path, finals=1)


async def test_fail_policy_refuses_identical_file(client: AsyncClient, tmp_path: Path) -> None:
    """on_exists='fail' also refuses when the existing file is identical (it says so)."""
    resp = await generate(client, fmt="b64_json")
    await resp.data[0].save(tmp_path / "fox")
    with pytest.raises(FileCollisionError, match="identical"):
        await resp.data[0].save(tmp_path / "fox")
    assert_clean(tmp_path, finals=1)


async def test_skip_policy_keeps_identical_file(client: AsyncClient, tmp_path: Path) -> None:
    """on_exists='skip' keeps an identical file and reports skipped=True."""
    resp = await generate(client, n=2)
    first = await resp.save(tmp_path)
    again = await resp.save(tmp_path, on_exists="skip")
    assert [s.skipped for s in again] == [True, True]
    assert [(s.path, s.sha256) for s in again] == [(s.path, s.sha256) for s in first]
    assert_clean(tmp_path, finals=2)


async def test_skip_policy_refuses_different_file(client: AsyncClient, tmp_path: Path) -> None:
    """on_exists='skip' does not silently keep a different file under the name."""
    target = tmp_path / "fox.png"
    target.write_bytes(b"old")
    resp = await generate(client)
    with pytest.raises(FileCollisionError):
        await resp.data[0].save(target, on_exists="skip")
    assert target.read_bytes() == b"old"
    assert_clean(tmp_path, finals=1)


async def test_overwrite_policy_replaces(client: AsyncClient, tmp_path: Path) -> None:
    """on_exists='overwrite' replaces the existing file with the new image."""
    target = tmp_path / "fox.png"
    target.write_bytes(b"old")
    resp = await generate(client, fmt="b64_json")
    saved = await resp.data[0].save(target, on_exists="overwrite")
    assert target.read_bytes() == resp.data[0].content
    assert not saved.skipped
    assert_clean(tmp_path, finals=1)


async def test_unknown_policy_is_rejected(client: AsyncClient, tmp_path: Path) -> None:
    """An unknown on_exists value is a ValidationError."""
    resp = await generate(client, fmt="b64_json")
    with pytest.raises(ValidationError, match="on_exists"):
        await resp.data[0].save(tmp_path, on_exists="merge")  # type: ignore[arg-type]


# -- disk errors -----------------------------------------------------------------------------


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores directory permissions"
)
@pytest.mark.parametrize("source", ["url", "b64_json"])
async def test_read_only_directory_is_save_error(
    client: AsyncClient, tmp_path: Path, source: str
) -> None:
    """A read-only directory raises SaveError naming the path, and nothing is written."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        resp = await generate(client, fmt=source)
        with pytest.raises(SaveError, match="locked") as info:
            await resp.data[0].save(locked / "fox.png")
        assert info.value.path == locked / "fox.png"
    finally:
        locked.chmod(0o700)
    assert_clean(tmp_path)


async def test_parent_is_a_file_is_save_error(client: AsyncClient, tmp_path: Path) -> None:
    """A target whose parent is a file raises SaveError naming the path."""
    blocker = tmp_path / "blocker"
    blocker.write_bytes(b"")
    resp = await generate(client)
    with pytest.raises(SaveError, match="blocker"):
        await resp.data[0].save(blocker / "fox.png")
    assert_clean(tmp_path, finals=1)


@pytest.mark.parametrize("source", ["url", "b64_json"])
async def test_disk_full_is_save_error_without_leftovers(
    client: AsyncClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    """A write failing with ENOSPC raises SaveError saying the disk is full; no file remains."""

    def full(_self: object, _data: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(_PartFile, "_write_sync", full)
    resp = await generate(client, fmt=source)
    with pytest.raises(SaveError, match="disk full") as info:
        await resp.data[0].save(tmp_path / "fox.png")
    assert str(tmp_path / "fox.png") in str(info.value)
    assert isinstance(info.value.__cause__, OSError)
    assert_clean(tmp_path)


async def test_fsync_option_saves(server: FakeXAIServer, tmp_path: Path) -> None:
    """With fsync=True files are saved the same way."""
    opts = DownloadOptions(fsync=True)
    async with AsyncClient(api_key=server.api_key, base_url=server.base_url, download=opts) as api:
        resp = await generate(api, n=2)
        saved = await resp.save(tmp_path)
    assert all(s.path.stat().st_size == IMAGE_BYTES for s in saved)


async def test_large_b64_image_is_saved(server: FakeXAIServer, tmp_path: Path) -> None:
    """A 10 MB base64 image (prefixed) is decoded and saved exactly."""
    server.settings.image_bytes = 10 * 1024 * 1024
    server.settings.b64_prefix = True
    async with AsyncClient(api_key=server.api_key, base_url=server.base_url) as api:
        resp = await generate(api, fmt="b64_json")
        saved = await resp.data[0].save(tmp_path / "big")
        content = resp.data[0].content
    assert content is not None
    assert saved.bytes == len(content) == 10 * 1024 * 1024
    assert saved.sha256 == hashlib.sha256(content).hexdigest()
    assert saved.path.read_bytes() == content


async def test_b64_stream_yields_slices(client: AsyncClient) -> None:
    """stream() of a b64_json image yields slices that join to the decoded bytes."""
    resp = await generate(client, fmt="b64_json")
    chunks = [chunk async for chunk in resp.data[0].stream(chunk_size=4096)]
    assert b"".join(chunks) == resp.data[0].content
    assert max(len(c) for c in chunks) == 4096
