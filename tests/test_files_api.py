"""The Files API and ``batches.wait`` end to end on the fake server, async and sync."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import aiohttp
import attrs
import pytest

import xai_images
from xai_images import AsyncClient, NotFoundError
from xai_images.outputs import Stored
from xai_images.testing import FakeXAIServer
from xai_images.types import OnExists


async def test_files_round_trip_on_the_fake(
    server: FakeXAIServer, client: AsyncClient, tmp_path: Path
) -> None:
    """Upload with purpose, list, get, download, public URL, revoke, delete: each as the API
    documents it, and the content comes back byte for byte."""
    data = b'{"custom_id": "a"}\n' * 1000
    stored = await client.files.upload(data, filename="jobs.jsonl", purpose="batch")
    upload = server.ledger.requests[-1]
    assert upload.body["purpose"] == "batch"
    listed = [f.id async for f in client.files.list(page_size=1)]
    assert listed == [stored.id]
    assert (await client.files.get(stored.id)).bytes == len(data)
    saved = await client.files.download(stored.id, tmp_path)
    assert saved.path == tmp_path / "jobs.jsonl"
    assert await asyncio.to_thread(saved.path.read_bytes) == data
    public = await client.files.create_public_url(stored.id, expires_after=3600)
    async with aiohttp.ClientSession() as session, session.get(public.public_url) as resp:
        assert (resp.status, await resp.read()) == (200, data)
    assert await client.files.revoke_public_url(stored.id) is True
    async with aiohttp.ClientSession() as session, session.get(public.public_url) as resp:
        assert resp.status == 404
    deleted = await client.files.delete(stored.id)
    assert (deleted.id, deleted.deleted) == (stored.id, True)
    with pytest.raises(NotFoundError):
        await client.files.download(stored.id, tmp_path / "gone.jsonl")
    assert not await asyncio.to_thread(os.path.exists, tmp_path / "gone.jsonl")


async def test_fake_refuses_metadata_after_the_file_part(
    server: FakeXAIServer, session: aiohttp.ClientSession
) -> None:
    """The fake reads parts in order, as the API does: purpose after the file is a 400."""
    form = aiohttp.FormData()
    form.add_field("file", b"x", filename="a.jsonl")
    form.add_field("purpose", "batch")
    headers = {"Authorization": f"Bearer {server.api_key}"}
    async with session.post(f"{server.base_url}/files", data=form, headers=headers) as resp:
        assert resp.status == 400


async def test_download_on_exists_fail_keeps_the_existing_file(
    client: AsyncClient, tmp_path: Path
) -> None:
    """A taken name with on_exists="fail" raises and leaves the existing file alone."""
    stored = await client.files.upload(b"new", filename="a.jsonl")
    target = tmp_path / "a.jsonl"
    await asyncio.to_thread(target.write_bytes, b"old")
    with pytest.raises(xai_images.FileCollisionError):
        await client.files.download(stored.id, target)
    assert await asyncio.to_thread(target.read_bytes) == b"old"
    again = await client.files.download(stored.id, target, on_exists="overwrite")
    assert (again.size, await asyncio.to_thread(target.read_bytes)) == (3, b"new")


async def test_cancel_path_reaches_the_fake_encoded_once(
    server: FakeXAIServer, client: AsyncClient
) -> None:
    """The fake records the path as sent: an id's ':' stays %3A."""
    with pytest.raises(NotFoundError):
        await client.batches.cancel("team/batch:1")
    assert server.ledger.requests[-1].raw_path == "/v1/batches/team%2Fbatch%3A1:cancel"


async def test_wait_on_the_fake_returns_once_cancelled(client: AsyncClient) -> None:
    """A batch cancelled while waiting is returned, with its counters."""
    batch = await client.batches.create("wait-demo")
    waiting = asyncio.create_task(client.batches.wait(batch.batch_id, poll_interval=0.01))
    await client.batches.cancel(batch.batch_id)
    done = await asyncio.wait_for(waiting, 10)
    assert done.cancelled
    assert done.request_id is not None


async def test_sync_client_has_files_and_batches(server: FakeXAIServer, tmp_path: Path) -> None:
    """The blocking Client uploads, lists, downloads, deletes files and waits for batches
    (run in a thread: this test's loop serves the fake)."""
    await asyncio.to_thread(_sync_files, server, tmp_path)


def _sync_files(server: FakeXAIServer, tmp_path: Path) -> None:
    with xai_images.Client(server.api_key, base_url=server.base_url) as client:
        stored = client.files.upload(b"abc\n", filename="s.jsonl")
        assert [f.id for f in client.files.list()] == [stored.id]
        saved = client.files.download(stored.id, tmp_path / "s.jsonl")
        assert saved.path is not None
        assert saved.path.read_bytes() == b"abc\n"
        assert client.files.read(stored.id) == b"abc\n"
        assert client.files.delete(stored.id).deleted
        batch = client.batches.create("sync-wait")
        client.batches.cancel(batch.batch_id)
        assert client.batches.wait(batch.batch_id, poll_interval=0.01).cancelled


async def test_sync_deferred_status_carries_both_ids(server: FakeXAIServer) -> None:
    """Sync deferred objects expose the deferred id and the answers' x-request-ids."""
    server.settings.deferred_pending_polls = 0
    await asyncio.to_thread(_sync_deferred, server)


def _sync_deferred(server: FakeXAIServer) -> None:
    with xai_images.Client(server.api_key, base_url=server.base_url) as client:
        started = client.images.generate_deferred("a fox")
        assert started.x_request_id is not None
        state = started.status()
        assert state.request_id == started.request_id
        assert state.x_request_id not in (None, started.request_id)


@attrs.define
class _Upload:
    output: _Memory
    key: str
    chunks: list[bytes] = attrs.field(factory=list)
    state: str = "open"

    async def write(self, chunk: bytes | bytearray | memoryview) -> None:
        self.chunks.append(bytes(chunk))

    async def commit(self) -> Stored:
        data = b"".join(self.chunks)
        self.output.objects[self.key] = data
        self.state = "committed"
        digest = hashlib.sha256(data).hexdigest()
        return Stored(f"memory://t/{self.key}", self.key, len(data), digest, "x")

    async def abort(self) -> None:
        self.state = "aborted"


@attrs.define
class _Memory:
    objects: dict[str, bytes] = attrs.field(factory=dict)
    uploads: list[_Upload] = attrs.field(factory=list)

    @property
    def url(self) -> str:
        return "memory://t"

    def key_for(self, stem: str, mime_type: str) -> str:
        return stem

    async def check_writable(self) -> None:
        return None

    async def open(self, key: str, mime_type: str, *, on_exists: OnExists = "fail") -> _Upload:
        upload = _Upload(self, key)
        self.uploads.append(upload)
        return upload

    async def verify(self, key: str, *, size: int, sha256: str) -> bool:
        return False


async def test_download_into_an_output_uses_the_seam(
    server: FakeXAIServer, client: AsyncClient
) -> None:
    """Content goes through the output seam under the stored name, made one safe key."""
    data = b"line\n" * 50_000
    stored = await client.files.upload(data, filename="../big.jsonl")
    target = _Memory()
    result = await client.files.download(stored.id, target)
    assert "/" not in result.key
    assert not result.key.startswith(".")
    assert target.objects == {result.key: data}
    assert [u.state for u in target.uploads] == ["committed"]
