"""The output seam: every save goes through an `Output`; the local directory keeps its
guarantees, a caller's own `Output` receives the bytes, and a bad target fails before any
request or download."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from typing import Any

import attrs
import pytest

from xai_images import (
    AsyncClient,
    Client,
    ConfigurationError,
    DownloadError,
    DownloadOptions,
    ImagesResponse,
    RetryPolicy,
    SaveError,
    ValidationError,
)
from xai_images._results._local import LocalDirectory
from xai_images._ui._cli import EXIT_FAILED, EXIT_USAGE, main
from xai_images.outputs import Output, Stored, Upload
from xai_images.testing import FakeXAIServer, Reply
from xai_images.types import OnExists

IMAGE_BYTES = 200_000
CHUNK = 16 * 1024

pytestmark = pytest.mark.usefixtures("xai_instant_retries")


@pytest.fixture
def fake_xai_server_options() -> dict[str, Any]:
    """Images of several chunks; stalls long enough to cancel during one."""
    return {"image_bytes": IMAGE_BYTES, "stall_seconds": 5.0}


@pytest.fixture
def xai_client_options() -> dict[str, Any]:
    """Small chunks (an image is many writes), a short stall timeout, two attempts."""
    return {
        "download": DownloadOptions(
            chunk_size=CHUNK, stall_timeout=2.0, retry=RetryPolicy(max_attempts=2)
        )
    }


# -- an Output written for these tests: objects in a dict --------------------------------------


@attrs.define
class MemoryUpload:
    """An upload kept in memory; visible in its output only after `commit`."""

    output: MemoryOutput
    key: str
    mime_type: str
    on_exists: str
    chunks: list[bytes] = attrs.field(factory=list)
    committed: bool = False
    aborted: bool = False

    async def write(self, chunk: bytes | bytearray | memoryview) -> None:
        assert not self.committed
        assert not self.aborted
        self.chunks.append(bytes(chunk))
        self.output.wrote.set()

    async def commit(self) -> Stored:
        data = b"".join(self.chunks)
        if self.key in self.output.objects and self.on_exists == "fail":
            raise SaveError(f"{self.key} exists", path=Path(self.key))
        self.output.objects[self.key] = data
        self.committed = True
        return Stored(
            location=f"{self.output.url}/{self.key}",
            key=self.key,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            mime_type=self.mime_type,
        )

    async def abort(self) -> None:
        self.aborted = True


@attrs.define
class MemoryOutput:
    """A whole `Output` in a few lines: the seam is pluggable."""

    objects: dict[str, bytes] = attrs.field(factory=dict)
    uploads: list[MemoryUpload] = attrs.field(factory=list)
    checked: int = 0
    wrote: asyncio.Event = attrs.field(factory=asyncio.Event)

    @property
    def url(self) -> str:
        return "memory://test"

    def key_for(self, stem: str, mime_type: str) -> str:
        return f"img/{stem}.{mime_type.rpartition('/')[2]}"

    async def check_writable(self) -> None:
        self.checked += 1

    async def open(self, key: str, mime_type: str, *, on_exists: OnExists = "fail") -> Upload:
        upload = MemoryUpload(self, key, mime_type, on_exists)
        self.uploads.append(upload)
        return upload

    async def verify(self, key: str, *, size: int, sha256: str) -> bool:
        data = self.objects.get(key)
        return data is not None and hashlib.sha256(data).hexdigest() == sha256


async def generate(client: AsyncClient, n: int = 1, fmt: str = "url") -> ImagesResponse:
    return await client.images.generate("a fox in snow", n=n, response_format=fmt)


def leftovers(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if p.name.endswith(".part")]


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# -- the local directory, through the public API -----------------------------------------------


@pytest.mark.parametrize("source", ["url", "b64_json"])
async def test_local_save_reports_location_and_key(
    client: AsyncClient, tmp_path: Path, source: str
) -> None:
    """response.save names each file by key and file:// location; the bytes and hash agree."""
    resp = await generate(client, n=2, fmt=source)
    saved = await resp.save(tmp_path / "out")
    for one, image in zip(saved, resp.images, strict=True):
        data = await image.read()
        assert one.path is not None
        assert one.path.read_bytes() == data
        assert one.key == one.path.name
        assert one.location == one.path.absolute().as_uri()
        assert one.sha256 == hashlib.sha256(data).hexdigest()
    assert leftovers(tmp_path) == []


async def test_file_url_target_is_a_directory(client: AsyncClient, tmp_path: Path) -> None:
    """image.save('file:///abs/dir') stores <request_id>-<index>.<ext> in that directory."""
    resp = await generate(client)
    image = resp.images[0]
    target = tmp_path / "by url"
    saved = await image.save(target.as_uri())
    assert saved.path == target / f"{image.stem}.png"
    assert saved.location == saved.path.as_uri()


async def test_file_name_form_keeps_its_rules(client: AsyncClient, tmp_path: Path) -> None:
    """image.save(file) still corrects the suffix and reports the corrected key."""
    resp = await generate(client)
    saved = await resp.images[0].save(tmp_path / "deep" / "fox.jpg")
    assert saved.path == tmp_path / "deep" / "fox.png"
    assert saved.key == "fox.png"


# -- a caller's own Output ---------------------------------------------------------------------


@pytest.mark.parametrize("source", ["url", "b64_json"])
async def test_custom_output_receives_the_bytes(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path, source: str
) -> None:
    """An Output object gets every byte via open/write/commit; nothing touches the disk."""
    output = MemoryOutput()
    resp = await generate(client, n=2, fmt=source)
    saved = await resp.save(output)
    assert output.checked == 1
    for one, image in zip(saved, resp.images, strict=True):
        data = await image.read()
        assert one.key == f"img/{image.stem}.png"
        assert output.objects[one.key] == data
        assert one.path is None
        assert one.location == f"memory://test/{one.key}"
        assert (one.bytes, one.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    if source == "url":  # streamed in chunks, not buffered whole
        assert all(len(upload.chunks) > 1 for upload in output.uploads)
    single = await resp.images[0].save(output, on_exists="overwrite")
    assert single.key == saved[0].key
    assert names(tmp_path) == []


async def test_failed_download_aborts_the_upload(
    client: AsyncClient, server: FakeXAIServer
) -> None:
    """When the download fails for good, the upload is aborted and nothing is committed."""
    output = MemoryOutput()
    resp = await generate(client)
    server.enqueue_download(Reply.truncate(0.5), Reply.error(500), Reply.error(500))
    server.settings.support_range = True
    with pytest.raises(DownloadError):
        await resp.images[0].save(output)
    assert output.objects == {}
    assert [u.aborted for u in output.uploads] == [True]


async def test_cancelled_save_aborts_the_upload(client: AsyncClient, server: FakeXAIServer) -> None:
    """Cancelling a save mid-body aborts the upload; nothing is committed."""
    output = MemoryOutput()
    resp = await generate(client)
    server.enqueue_download(Reply.stall(0.5, seconds=5.0))
    task = asyncio.create_task(resp.images[0].save(output))
    await output.wrote.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert output.objects == {}
    assert [(u.aborted, u.committed) for u in output.uploads] == [(True, False)]


async def test_restart_without_range_starts_a_new_upload(
    client: AsyncClient, server: FakeXAIServer
) -> None:
    """A server that ignores Range after a cut: the first upload is aborted, a new one holds
    exactly the image."""
    server.settings.support_range = False
    output = MemoryOutput()
    resp = await generate(client)
    expected = await resp.images[0].read()
    server.enqueue_download(Reply.truncate(0.5))
    saved = await resp.images[0].save(output)
    assert output.objects[saved.key] == expected
    assert [(u.aborted, u.committed) for u in output.uploads] == [(True, False), (False, True)]


async def test_sync_client_saves_into_an_output(server: FakeXAIServer) -> None:
    """The blocking client's save takes an Output too."""
    output = MemoryOutput()

    def blocking() -> list[Any]:
        # In a thread: the fake server's loop keeps serving.
        with Client(api_key=server.api_key, base_url=server.base_url) as sync:
            return list(sync.images.generate("a fox in snow").save(output))

    saved = await asyncio.to_thread(blocking)
    assert list(output.objects) == [saved[0].key]


# -- LocalDirectory as an Output ---------------------------------------------------------------


PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 100


async def test_local_directory_conforms(tmp_path: Path) -> None:
    """The local directory passes the same runtime protocol checks as any Output."""
    local = LocalDirectory(tmp_path)
    assert isinstance(local, Output)
    upload = await local.open("a.png", "image/png")
    assert isinstance(upload, Upload)
    await upload.abort()
    assert local.url == tmp_path.as_uri()  # tmp_path is absolute


async def test_commit_is_atomic_and_abort_leaves_nothing(tmp_path: Path) -> None:
    """Before commit the final name does not exist; commit makes it whole; abort removes all."""
    local = LocalDirectory(tmp_path, batch=64)
    upload = await local.open("a.png", "image/png")
    for start in range(0, len(PNG), 10):
        await upload.write(PNG[start : start + 10])
    assert not (tmp_path / "a.png").exists()
    stored = await upload.commit()
    assert (tmp_path / "a.png").read_bytes() == PNG
    assert (stored.size, stored.sha256, stored.key) == (
        len(PNG),
        hashlib.sha256(PNG).hexdigest(),
        "a.png",
    )
    aborted = await local.open("b.png", "image/png")
    await aborted.write(PNG)
    await aborted.write(PNG)  # over the batch: the part file exists now
    await aborted.abort()
    await aborted.abort()  # idempotent
    assert names(tmp_path) == ["a.png"]


@pytest.mark.parametrize(
    "key", ["../x.png", "a/../../x.png", "/etc/x.png", "", ".", "a//b.png", "a/./b.png", "x\0.png"]
)
async def test_keys_never_escape(tmp_path: Path, key: str) -> None:
    """A key that could name anything outside the directory is a ValidationError."""
    local = LocalDirectory(tmp_path / "root")
    with pytest.raises(ValidationError) as info:
        await local.open(key, "image/png")
    assert info.value.field == "key"
    with pytest.raises(ValidationError):
        await local.verify(key, size=1, sha256="0" * 64)
    assert names(tmp_path) == []


async def test_nested_key_stays_inside(tmp_path: Path) -> None:
    """A key with folders lands in folders under the root."""
    local = LocalDirectory(tmp_path)
    upload = await local.open("a/b/c.png", "image/png")
    await upload.write(PNG)
    stored = await upload.commit()
    assert stored.path == tmp_path / "a" / "b" / "c.png"
    assert stored.location == (tmp_path / "a" / "b" / "c.png").absolute().as_uri()


def test_locations_are_file_urls(tmp_path: Path) -> None:
    """Locations quote the key and join it to the directory URL, also at the root."""
    assert LocalDirectory(tmp_path).location("a b/c.png") == f"{tmp_path.as_uri()}/a%20b/c.png"
    assert LocalDirectory("/").location("c.png") == "file:///c.png"


async def test_memory_per_upload_is_bounded_by_the_batch(tmp_path: Path) -> None:
    """An upload never holds more than one batch of unwritten bytes, whatever the image size."""
    local = LocalDirectory(tmp_path, batch=64)
    upload = await local.open("big.png", "image/png")
    await upload.write(PNG)
    for _ in range(50):
        await upload.write(b"\0" * 40)
        assert upload.size - upload._part.size <= 64  # unwritten bytes
    stored = await upload.commit()
    assert stored.size == len(PNG) + 50 * 40


async def test_verify(tmp_path: Path) -> None:
    """verify is true only for a regular file of that size and hash."""
    local = LocalDirectory(tmp_path)
    upload = await local.open("a.png", "image/png")
    await upload.write(PNG)
    stored = await upload.commit()
    digest = hashlib.sha256(PNG).hexdigest()
    assert await local.verify("a.png", size=stored.size, sha256=stored.sha256)
    assert await local.verify("a.png", size=len(PNG), sha256=digest.upper())
    assert not await local.verify("a.png", size=len(PNG) + 1, sha256=digest)
    assert not await local.verify("a.png", size=len(PNG), sha256="0" * 64)
    assert not await local.verify("missing.png", size=len(PNG), sha256=digest)
    os.symlink(tmp_path / "a.png", tmp_path / "link.png")
    assert not await local.verify("link.png", size=len(PNG), sha256=digest)


async def test_check_writable_names_the_target(tmp_path: Path) -> None:
    """A target that is a file is a SaveError naming it."""
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(SaveError, match="file"):
        await LocalDirectory(tmp_path / "file").check_writable()
    await LocalDirectory(tmp_path / "new" / "dir").check_writable()
    assert (tmp_path / "new" / "dir").is_dir()


# -- bad targets fail before anything is fetched or sent ---------------------------------------


@pytest.mark.parametrize("scheme", ["s3", "gs"])
async def test_store_url_is_a_typed_error_before_any_download(
    client: AsyncClient,
    server: FakeXAIServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    scheme: str,
) -> None:
    """An object-store URL that cannot be written (no bucket, no credentials) is a
    ConfigurationError naming it, before any download, and never a local folder."""
    pytest.importorskip("obstore")
    monkeypatch.chdir(tmp_path)
    if scheme == "s3":  # moto's S3 on loopback, a bucket that does not exist
        target = request.getfixturevalue("s3_target") + "-missing/prefix"
    else:  # credentials that cannot be read: no request leaves the machine
        monkeypatch.setenv("GOOGLE_SERVICE_ACCOUNT", str(tmp_path / "missing" / "sa.json"))
        target = "gs://b/p"
    resp = await generate(client)
    with pytest.raises(ConfigurationError, match=target.split("://")[0] + "://"):
        await resp.save(target)
    with pytest.raises(ConfigurationError):
        await resp.images[0].save(target)
    assert server.ledger.images_downloaded == 0
    assert names(tmp_path) == []


async def test_unknown_scheme_and_bad_file_url_are_validation_errors(
    client: AsyncClient, server: FakeXAIServer
) -> None:
    """ftp:// is refused naming the argument; file:// must name an absolute local path; a URL
    with credentials is never echoed with them."""
    resp = await generate(client)
    with pytest.raises(ValidationError) as info:
        await resp.save("ftp://user:secret@host/dir")
    assert info.value.field == "directory"
    assert "secret" not in str(info.value)
    with pytest.raises(ValidationError) as info:
        await resp.images[0].save("file://otherhost/dir")
    assert info.value.field == "path"
    with pytest.raises(ValidationError):
        await resp.save(123)  # type: ignore[arg-type]
    assert server.ledger.images_downloaded == 0


async def test_cli_store_url_is_refused_before_any_request(
    env: FakeXAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`-o s3://...` exits 2 before any API request; no folder named s3: appears."""
    monkeypatch.chdir(tmp_path)
    jobs = tmp_path / "j.jsonl"
    jobs.write_text('{"prompt": "x"}\n')
    for argv in (["generate", "a fox", "-o", "s3://b/p"], ["batch", str(jobs), "-o", "s3://b"]):
        assert await asyncio.to_thread(main, argv) == EXIT_USAGE
    assert env.ledger.api_requests() == []
    assert names(tmp_path) == ["j.jsonl"]


async def test_cli_unwritable_output_fails_before_any_request(
    env: FakeXAIServer, tmp_path: Path
) -> None:
    """`generate -o <a file>` fails with a SaveError naming it, before the paid request."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_bytes(b"x")
    code = await asyncio.to_thread(main, ["generate", "a fox", "-o", str(blocker)])
    assert code == EXIT_FAILED
    assert env.ledger.api_requests() == []


async def test_cli_accepts_a_file_url(env: FakeXAIServer, tmp_path: Path) -> None:
    """`-o file:///abs/dir` saves into that directory."""
    out = tmp_path / "out"
    code = await asyncio.to_thread(main, ["generate", "a fox", "-o", out.as_uri()])
    assert code == 0
    assert [p.suffix for p in out.iterdir()] == [".png"]
