"""Bulk jobs into an object store (moto's S3): both sources, resume, the manifest copy, the
gallery page, and images spilled to a local directory when the store fails after payment."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import open_multipart_uploads

from xai_images import AsyncClient, GenerateRequest
from xai_images.bulk import load_manifest

pytest.importorskip("obstore")

pytestmark = pytest.mark.usefixtures("xai_instant_retries")


def prompts(count: int) -> list[GenerateRequest]:
    return [GenerateRequest(f"a heron number {i}", id=f"heron-{i}") for i in range(count)]


async def _objects(target: str) -> dict[str, bytes]:
    from obstore.store import from_url

    store = from_url(target)
    keys = [m["path"] for batch in store.list() for m in batch]
    out: dict[str, bytes] = {}
    for key in keys:
        got = await store.get_async(key)
        out[key] = bytes(await got.bytes_async())
    return out


def job_options(via: str, **options: Any) -> dict[str, Any]:
    """``client.bulk`` options for the path ``via``; the Batch API polls quickly in tests."""
    if via == "batch-api":
        from xai_images.bulk import BatchAPI

        options["via"] = BatchAPI(poll_interval=0.01, max_poll_interval=0.05)
    return options


async def stop_after(run: Any, count: int) -> None:
    """Iterate ``run`` and stop it once ``count`` outcomes came."""
    seen = 0
    async with run:
        async for _outcome in run:
            seen += 1
            if seen == count:
                run.stop()


def billed(server: Any) -> int:
    return int(server.ledger.images_billed)  # Batch-API images included


def _local_images(root: Path) -> list[Path]:
    return [
        p
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp")
    ]


@pytest.mark.parametrize("via", ["realtime", "batch-api"])
async def test_bulk_job_into_s3_interrupted_and_resumed(
    via: str,
    server: Any,
    client: AsyncClient,
    s3_target: str,
    moto_endpoint: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Interrupted after two items and resumed: every image once in the bucket with its sha256
    in the local manifest, nothing paid twice, no open multipart upload, no image on disk; a
    copy of the manifest and the gallery page are uploaded beside the images."""
    monkeypatch.chdir(tmp_path)
    target = f"{s3_target}/run1"
    jobs = prompts(6)
    kwargs = job_options(via, output_dir=target, concurrency=2)
    run = client.bulk(jobs, **kwargs)
    await stop_after(run, 2)
    manifest = tmp_path / f"xai-images-{s3_target[5:]}-run1.manifest.jsonl"
    assert run.manifest_path == manifest
    again = client.bulk(jobs, **kwargs)
    outcomes = await again.collect()
    assert all(o.ok for o in outcomes), [(o.id, o.status, o.error) for o in outcomes]
    records = load_manifest(manifest)
    assert sorted(records) == sorted(j.id for j in jobs if j.id)
    assert billed(server) == 6  # nothing paid twice
    objects = await _objects(s3_target)
    image_keys = [k for k in objects if k.startswith("run1/heron-")]
    assert len(image_keys) == 6  # every image exactly once
    for record in records.values():
        assert record.status == "ok"
        (f,) = record.files
        data = objects[f"run1/{f.path}"]
        assert hashlib.sha256(data).hexdigest() == f.sha256
        assert len(data) == f.bytes
        assert f.spilled_to is None
    text = manifest.read_text()
    assert "http" not in text
    assert "X-Amz" not in text
    assert objects[f"run1/{manifest.name}"] == manifest.read_bytes()
    page = objects[f"run1/{manifest.stem}.html"].decode()
    assert page.count("<img") == 6
    assert 'src="heron-0-0.' in page
    assert open_multipart_uploads(moto_endpoint, s3_target[5:]) == []
    assert _local_images(tmp_path) == []
    assert all(o.files == () for o in outcomes)


@pytest.mark.parametrize("via", ["realtime", "batch-api"])
async def test_store_failure_after_payment_spills_locally(
    via: str, server: Any, client: AsyncClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store refuses every write after the check: the paid images go to the spill
    directory beside the manifest, recorded with ``spilled_to``; a resume pays nothing again."""
    from xai_images._results import _objstore

    monkeypatch.chdir(tmp_path)
    real_put = _objstore.StoreUpload._put

    async def refused(self: Any, sha256: str) -> Any:
        if self.key.startswith("heron-"):
            raise _objstore.StoreError("write refused (test)", location="memory://x", key=self.key)
        return await real_put(self, sha256)

    monkeypatch.setattr(_objstore.StoreUpload, "_put", refused)
    jobs = prompts(3)
    manifest = tmp_path / "job.manifest.jsonl"
    kwargs = job_options(via, output_dir=f"memory://spill-{via}", manifest=manifest)
    run = client.bulk(jobs, **kwargs)
    outcomes = await run.collect()
    assert all(o.ok for o in outcomes)
    spill = tmp_path / "job.manifest.spill"
    assert len(_local_images(spill)) == 3
    for record in load_manifest(manifest).values():
        (f,) = record.files
        assert f.spilled_to is not None
        assert Path(f.spilled_to).parent == spill
        data = await asyncio.to_thread(Path(f.spilled_to).read_bytes)
        assert hashlib.sha256(data).hexdigest() == f.sha256
    assert server.ledger.images_billed == 3
    await client.bulk(jobs, **kwargs).collect()
    assert server.ledger.images_billed == 3  # the spilled images count as kept


@pytest.mark.parametrize("via", ["realtime", "batch-api"])
async def test_signed_bulk_job_into_s3_interrupted_and_resumed(
    via: str,
    server: Any,
    client: AsyncClient,
    s3_target: str,
    moto_endpoint: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``upload_urls=True``: xAI PUTs every image; the client downloads nothing; interrupted and
    resumed, each image is in the bucket once, recorded with key, size and etag (never a URL),
    nothing paid twice."""
    monkeypatch.chdir(tmp_path)
    target = f"{s3_target}/signed"
    jobs = prompts(5)
    kwargs = job_options(via, output_dir=target, concurrency=2, upload_urls=True)
    run = client.bulk(jobs, **kwargs)
    await stop_after(run, 2)
    outcomes = await client.bulk(jobs, **kwargs).collect()
    assert all(o.ok for o in outcomes), [(o.id, o.status, o.error) for o in outcomes]
    assert billed(server) == 5
    objects = await _objects(s3_target)
    records = load_manifest(run.manifest_path)
    assert len(records) == 5
    for record in records.values():
        (f,) = record.files
        assert f.path == f"{record.id}-0.jpg"
        assert len(objects[f"signed/{f.path}"]) == f.bytes
        assert f.etag
        assert f.sha256 == ""
    assert len([k for k in objects if k.startswith("signed/heron-")]) == 5
    text = await asyncio.to_thread(run.manifest_path.read_text)
    assert "http" not in text
    assert "X-Amz" not in text
    assert open_multipart_uploads(moto_endpoint, s3_target[5:]) == []
    assert await asyncio.to_thread(_local_images, tmp_path) == []


@pytest.mark.parametrize("via", ["realtime", "batch-api"])
async def test_signed_bulk_upload_failure_is_a_typed_outcome(
    via: str,
    server: Any,
    client: AsyncClient,
    s3_target: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """xAI could not upload: the item fails with UploadFailedError, billed, not stored; a plain
    resume does not pay for it again."""
    from xai_images import UploadFailedError, ValidationError

    monkeypatch.chdir(tmp_path)
    server.settings.upload_fail_rate = 1.0
    jobs = prompts(2)
    target = f"{s3_target}/fails"
    kwargs = job_options(via, output_dir=target, upload_urls=True)
    outcomes = await client.bulk(jobs, **kwargs).collect()
    assert [o.status for o in outcomes] == ["failed", "failed"]
    assert all(isinstance(o.error, UploadFailedError) for o in outcomes)
    assert all(o.record is not None and o.record.billed for o in outcomes)
    await client.bulk(jobs, **kwargs).collect()
    assert billed(server) == 2
    with pytest.raises(ValidationError, match="upload_urls"):
        client.bulk(jobs, output_dir=tmp_path / "local", upload_urls=True)


async def _cli(*argv: str) -> int:
    from xai_images._ui._cli import main

    # main() runs its own event loop; a worker thread keeps the fake server's loop serving.
    return await asyncio.to_thread(main, list(argv))


@pytest.mark.parametrize(
    "extra",
    [
        ("--upload-urls",),
        ("--via", "batch-api", "--poll-interval", "0.01"),
        ("--via", "batch-api", "--poll-interval", "0.01", "--upload-urls"),
        (),
    ],
    ids=["signed", "batch-api", "batch-api-signed", "download"],
)
async def test_cli_batch_into_s3(
    env: Any,
    s3_target: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    extra: tuple[str, ...],
) -> None:
    """``xai-images batch JOBS -o s3://...`` (real-time downloaded or signed, Batch API): the
    images land in the bucket, the manifest beside the working directory, the summary says
    where, a second run pays nothing; no secret is printed."""
    from conftest import S3_SECRET_KEY

    monkeypatch.chdir(tmp_path)
    jobs = tmp_path / "jobs.jsonl"
    lines = [json.dumps({"prompt": f"an owl {i}", "id": f"owl-{i}"}) for i in range(3)]
    await asyncio.to_thread(jobs.write_text, "\n".join(lines) + "\n")
    target = f"{s3_target}/cli"
    argv = ("batch", str(jobs), "-o", target, "--plain", *extra)
    assert await _cli(*argv) == 0
    assert await _cli(*argv) == 0
    assert billed(env) == 3
    objects = await _objects(s3_target)
    assert len([k for k in objects if k.startswith("cli/owl-")]) == 3
    manifest = tmp_path / f"xai-images-{s3_target[5:]}-cli.manifest.jsonl"
    assert f"cli/{manifest.name}" in objects
    printed = capsys.readouterr().out
    assert f"images:   {target}" in printed
    assert f"manifest: {manifest}" in printed
    assert S3_SECRET_KEY not in printed
    assert "X-Amz" not in printed


async def test_cli_upload_urls_needs_a_store(
    env: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = tmp_path / "jobs.jsonl"
    await asyncio.to_thread(jobs.write_text, json.dumps({"prompt": "an owl"}) + "\n")
    code = await _cli("batch", str(jobs), "-o", str(tmp_path / "out"), "--upload-urls")
    assert code == 2
    assert "--upload-urls" in capsys.readouterr().err
    assert billed(env) == 0
