"""Object-store targets (the `Output` seam over obstore) against moto's real S3 API."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from conftest import S3_SECRET_KEY, open_multipart_uploads

import xai_images
from xai_images._results._objstore import StoreOutput, is_store_url, store_output
from xai_images.testing import FakeXAIServer, sample_image

obstore = pytest.importorskip("obstore")

MiB = 1024 * 1024


async def _store(output: StoreOutput, key: str, data: bytes, **kwargs: object) -> object:
    upload = await output.open(key, "image/png", **kwargs)  # type: ignore[arg-type]
    for start in range(0, len(data), 256 * 1024):
        await upload.write(data[start : start + 256 * 1024])
    return await upload.commit()


def _bucket(target: str) -> str:
    return target.removeprefix("s3://").split("/")[0]


async def test_small_image_is_one_put_with_its_sha256_as_metadata(s3_target: str) -> None:
    """An image is stored complete, with size, sha256 (also as metadata), mime type and etag."""
    output = store_output(f"{s3_target}/run1")
    data = sample_image()
    stored = await _store(output, output.key_for("req-0", "image/png"), data)
    digest = hashlib.sha256(data).hexdigest()
    assert stored.key == "req-0.png"  # type: ignore[attr-defined]
    assert stored.location == f"{s3_target}/run1/req-0.png"  # type: ignore[attr-defined]
    assert (stored.size, stored.sha256) == (len(data), digest)  # type: ignore[attr-defined]
    assert stored.etag  # type: ignore[attr-defined]
    result = await obstore.get_async(output.store, "req-0.png")
    assert bytes(await result.bytes_async()) == data
    assert result.attributes["sha256"] == digest
    assert result.attributes["Content-Type"] == "image/png"
    assert await output.verify("req-0.png", size=len(data), sha256=digest)
    assert not await output.verify("req-0.png", size=len(data), sha256="0" * 64)
    assert not await output.verify("req-0.png", size=len(data) + 1, sha256=digest)
    assert not await output.verify("other.png", size=len(data), sha256=digest)


async def test_on_exists_rules_hold_in_a_bucket(s3_target: str) -> None:
    """fail refuses a taken key, skip keeps an identical object, overwrite replaces."""
    output = store_output(s3_target)
    data = sample_image()
    await _store(output, "a.png", data)
    with pytest.raises(xai_images.FileCollisionError, match=r"s3://.*/a\.png already exists"):
        await _store(output, "a.png", data)
    skipped = await _store(output, "a.png", data, on_exists="skip")
    assert skipped.skipped  # type: ignore[attr-defined]
    other = sample_image(variant=1)
    with pytest.raises(xai_images.FileCollisionError):
        await _store(output, "a.png", other, on_exists="skip")
    replaced = await _store(output, "a.png", other, on_exists="overwrite")
    assert replaced.sha256 == hashlib.sha256(other).hexdigest()  # type: ignore[attr-defined]
    got = await obstore.get_async(output.store, "a.png")
    assert bytes(await got.bytes_async()) == other


async def test_large_image_goes_multipart_and_verifies_by_reading_back(
    s3_target: str, moto_endpoint: str
) -> None:
    """Past one chunk the object is a multipart upload; verify hashes it back; no parts left."""
    output = store_output(s3_target, chunk_size=5 * MiB)
    data = sample_image() + bytes(range(256)) * (48 * 1024)  # about 12 MiB: three parts
    stored = await _store(output, "big.png", data)
    digest = hashlib.sha256(data).hexdigest()
    assert stored.sha256 == digest  # type: ignore[attr-defined]
    assert str(stored.etag).rstrip('"').endswith("-3")  # type: ignore[attr-defined]
    assert await output.verify("big.png", size=len(data), sha256=digest)
    assert not await output.verify("big.png", size=len(data), sha256="f" * 64)
    assert open_multipart_uploads(moto_endpoint, _bucket(s3_target)) == []


async def test_aborted_multipart_leaves_no_object_and_no_parts(
    s3_target: str, moto_endpoint: str
) -> None:
    """An upload aborted after parts went out leaves nothing under the key and no open upload."""
    output = store_output(s3_target, chunk_size=5 * MiB)
    upload = await output.open("half.png", "image/png")
    for _ in range(13):
        await upload.write(b"\x89" * MiB)
    await upload.abort()
    await upload.abort()  # idempotent
    assert await output.head("half.png") is None
    assert open_multipart_uploads(moto_endpoint, _bucket(s3_target)) == []


async def test_cancelled_writer_then_abort_leaves_no_parts(
    s3_target: str, moto_endpoint: str
) -> None:
    """A writer cancelled mid-stream, then aborted (as the seam does), leaves no open upload."""
    output = store_output(s3_target, chunk_size=5 * MiB)
    upload = await output.open("cancelled.png", "image/png")
    started = asyncio.Event()

    async def writer() -> None:
        for _ in range(100):
            await upload.write(b"\x00" * MiB)
            if upload.size > 7 * MiB:  # past the first chunk: a multipart upload is open
                started.set()

    task = asyncio.create_task(writer())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await upload.abort()
    assert await output.head("cancelled.png") is None
    assert open_multipart_uploads(moto_endpoint, _bucket(s3_target)) == []


async def test_missing_bucket_is_a_typed_error_naming_the_target(s3_target: str) -> None:
    """check_writable on a bucket that does not exist: StoreUnavailableError, no secret."""
    output = store_output(f"{s3_target}-missing/prefix")
    with pytest.raises(xai_images.StoreUnavailableError) as info:
        await output.check_writable()
    assert info.value.target == f"{s3_target}-missing/prefix"
    assert f"{s3_target}-missing/prefix" in str(info.value)
    assert S3_SECRET_KEY not in str(info.value)
    await store_output(s3_target).check_writable()  # the real bucket is writable


async def test_keys_never_escape_the_target(s3_target: str) -> None:
    """key_for applies the local files' safe-name rule; open refuses an unsafe key."""
    output = store_output(s3_target)
    assert output.key_for("../../etc/passwd", "image/jpeg") == "___.._etc_passwd.jpg"
    for bad in ("../x.png", "/abs.png", "a//b.png", "", ".hidden.png"):
        with pytest.raises(xai_images.ValidationError, match="key"):
            await output.open(bad, "image/png")


def test_without_obstore_a_store_url_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without the extra, a store URL is a typed error with the pip command."""
    monkeypatch.setitem(sys.modules, "obstore", None)
    with pytest.raises(xai_images.StoreUnavailableError, match=r"xai-images\[storage\]"):
        store_output("s3://bucket/prefix")


def test_urls_are_shown_without_credentials() -> None:
    """User info and query never reach the target's URL or repr."""
    output = StoreOutput("s3://key:secret@bucket/p?token=abc", store=obstore.store.MemoryStore())
    assert output.url == "s3://bucket/p"
    assert "secret" not in repr(output)
    assert "abc" not in repr(output)
    assert is_store_url("gs://b")
    assert is_store_url("memory://t")
    assert not is_store_url("out/dir")
    with pytest.raises(xai_images.ValidationError, match="output"):
        store_output("out/dir")


async def test_memory_and_file_targets(tmp_path: Path) -> None:
    """memory:// keeps objects by name for the process; file:// writes complete files."""
    data = sample_image()
    await _store(store_output("memory://objstore-test/p"), "m.png", data)
    again = store_output("memory://objstore-test/p")
    digest = hashlib.sha256(data).hexdigest()
    assert await again.verify("m.png", size=len(data), sha256=digest)
    local = StoreOutput(f"file://{tmp_path}/out")
    await _store(local, "f.png", data)
    assert (tmp_path / "out" / "f.png").read_bytes() == data
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["f.png"]


async def test_signed_put_urls_sign_method_key_and_expiry(s3_target: str) -> None:
    """Signed URLs name the key under the prefix, the expiry, and sign no Content-Type; a PUT
    to one stores the object (moto checks no signature, so the signed fields are checked)."""
    output = store_output(f"{s3_target}/signed")
    urls = await output.sign_uploads(["a.png", "b.jpg"], expires_in=datetime.timedelta(minutes=7))
    assert len(urls) == 2
    first = urlsplit(urls[0])
    query = parse_qs(first.query)
    assert first.path == f"/{_bucket(s3_target)}/signed/a.png"
    assert query["X-Amz-Expires"] == ["420"]
    assert query["X-Amz-SignedHeaders"] == ["host"]
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert S3_SECRET_KEY not in urls[0]
    data = sample_image()
    headers = {"Content-Type": "image/png"}
    async with (
        aiohttp.ClientSession() as session,
        session.put(urls[0], data=data, headers=headers) as answer,
    ):
        assert answer.status == 200
    found = await output.head("a.png")
    assert found is not None
    assert found[0] == len(data)
    with pytest.raises(xai_images.ValidationError, match="expires_in"):
        await output.sign_uploads(["a.png"], expires_in=datetime.timedelta(days=8))


async def test_azure_signed_uploads_are_refused() -> None:
    """Azure SAS URLs cannot carry x-ms-blob-type: signing for az:// is refused plainly."""
    output = StoreOutput("az://account/container", store=obstore.store.MemoryStore())
    with pytest.raises(xai_images.StoreUnavailableError, match="x-ms-blob-type"):
        await output.sign_uploads(["a.png"], expires_in=datetime.timedelta(minutes=5))


async def test_stat_lists_only_the_wanted_keys(s3_target: str) -> None:
    """stat finds the wanted keys among neighbours that share their stem, in one listing."""
    output = store_output(f"{s3_target}/stat")
    data = sample_image()
    for key in ("a-1.jpg", "a-10.jpg", "a-2.jpg", "a-1.jpgx", "b-1.jpg"):
        await _store(output, key, data)
    found = await output.stat(["a-1.jpg", "a-2.jpg", "a-3.jpg"])
    assert sorted(found) == ["a-1.jpg", "a-2.jpg"]
    assert found["a-1.jpg"][0] == len(data)
    assert await output.stat(["b-1.jpg"]) == {"b-1.jpg": (len(data), found["a-1.jpg"][1])}


async def test_response_save_to_a_bucket(
    client: xai_images.AsyncClient, server: object, s3_target: str, moto_endpoint: str
) -> None:
    """response.save("s3://...") stores every image through the seam, sha256 recorded."""
    response = await client.images.generate("a red kite", n=2)
    saved = await response.save(f"{s3_target}/kites", name="kite-{index}")
    assert [s.key for s in saved] == ["kite-0.png", "kite-1.png"]
    assert saved[0].location == f"{s3_target}/kites/kite-0.png"
    output = store_output(f"{s3_target}/kites")
    for item in saved:
        assert await output.verify(item.key, size=item.bytes, sha256=item.sha256)  # type: ignore[arg-type]
    one = await response.data[0].save(f"{s3_target}/single")
    assert one.location is not None
    assert one.location.startswith(f"{s3_target}/single/")
    assert open_multipart_uploads(moto_endpoint, s3_target.removeprefix("s3://")) == []


async def test_response_save_to_a_missing_bucket_fails_before_downloading(
    client: xai_images.AsyncClient, server: FakeXAIServer, s3_target: str
) -> None:
    """A target that cannot be written is a StoreUnavailableError before any download."""
    response = await client.images.generate("a red kite")
    with pytest.raises(xai_images.StoreUnavailableError, match="-nope"):
        await response.save(f"{s3_target}-nope/kites")
    assert server.ledger.images_downloaded == 0


async def test_response_save_to_memory(client: xai_images.AsyncClient) -> None:
    """memory:// is a working target (for tests): save, then verify through a new output."""
    response = await client.images.generate("a red kite")
    saved = await response.save("memory://objstore-save/run")
    again = store_output("memory://objstore-save/run")
    assert await again.verify(saved[0].key, size=saved[0].bytes, sha256=saved[0].sha256)  # type: ignore[arg-type]
