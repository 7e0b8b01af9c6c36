"""One job across machines: ``--shard K/N`` splits a job file by item id; manifests read as one."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

import xai_images
from xai_images._bulk._shard import (
    load_manifests,
    parse_shard,
    select_shard,
    shard_index,
    shard_manifest,
)
from xai_images._ui._cli import EXIT_OK, EXIT_USAGE, main
from xai_images.bulk import load_jobs
from xai_images.testing import FakeXAIServer


async def cli(*argv: str) -> int:
    # main() runs its own event loop; a worker thread keeps the fake server's loop serving.
    return await asyncio.to_thread(main, list(argv))


def _job_file(path: Path) -> Path:
    lines = [{"prompt": f"a boat, number {i}"} for i in range(10)]
    lines += [{"prompt": "the same request twice"}] * 2  # derived ids: x and x-2
    lines += [{"prompt": "named", "id": "named-item"}]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines) + "not json\n")
    return path


def test_shards_partition_the_jobs_deterministically(tmp_path: Path) -> None:
    """Every job is in exactly one of N shards, in job order; duplicates stay together."""
    jobs = load_jobs(_job_file(tmp_path / "jobs.jsonl"))
    shards = [select_shard(jobs, k, 3) for k in (1, 2, 3)]
    assert sum(len(s) for s in shards) == len(jobs)
    assert sorted(id(j) for s in shards for j in s) == sorted(map(id, jobs))
    same = [j for j in jobs if getattr(j, "prompt", "") == "the same request twice"]
    assert any(all(j in s for j in same) for s in shards)
    assert shard_index("named-item", 3) == shard_index("named-item", 3)
    assert [j for j in jobs if j in shards[0]] == shards[0]
    assert select_shard(jobs, 1, 1) == jobs


def test_shard_values_and_manifest_names() -> None:
    """K/N is checked (typed error naming the field); each shard gets its own manifest."""
    assert parse_shard("2/3") == (2, 3)
    for bad in ("0/3", "4/3", "3", "a/b", "1/0"):
        with pytest.raises(xai_images.ValidationError, match="shard"):
            parse_shard(bad)
    assert shard_manifest(Path("out/manifest.jsonl"), 2, 3) == Path(
        "out/manifest.shard-2-of-3.jsonl"
    )


async def test_three_shards_do_every_item_exactly_once(
    env: FakeXAIServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Three shards of one job into one directory: each item once, nothing paid twice; the
    three manifests read as one list every item, and one gallery shows them all."""
    jobs = _job_file(tmp_path / "jobs.jsonl")
    out = tmp_path / "out"
    codes = await asyncio.gather(
        *(
            cli("batch", str(jobs), "-o", str(out), "--shard", f"{k}/3", "--plain")
            for k in (1, 2, 3)
        )
    )
    assert all(code in (EXIT_OK, 1) for code in codes)  # the bad line fails in one shard
    manifests = [out / f"manifest.shard-{k}-of-3.jsonl" for k in (1, 2, 3)]
    merged = load_manifests(manifests)
    ok = {i for i, r in merged.items() if r.status == "ok"}
    assert len(ok) == 13
    assert "named-item" in ok
    assert env.ledger.images_billed == 13
    per_shard = [set(load_manifests([m])) for m in manifests]
    assert sum(len(s) for s in per_shard) == len(set().union(*per_shard))  # disjoint
    capsys.readouterr()
    args = ["gallery", str(out)] + [x for m in manifests for x in ("--manifest", str(m))]
    assert await cli(*args) == EXIT_OK
    page = (out / "index.html").read_text()
    assert page.count("<img") >= 13
    assert await cli("batch", str(jobs), "-o", str(out), "--shard", "4/3") == EXIT_USAGE


async def test_three_shards_on_one_redis_limit(
    env: FakeXAIServer, tmp_path: Path, redis_server: Any
) -> None:
    """Three shards sharing one Redis rate limit still do every item exactly once."""
    jobs = _job_file(tmp_path / "jobs.jsonl")
    out = tmp_path / "out"
    limit = ("--shared-limit", redis_server.url, "--rps", "50", "--plain")
    runs = [("batch", str(jobs), "-o", str(out), "--shard", f"{k}/3", *limit) for k in (1, 2, 3)]
    codes = await asyncio.gather(*(cli(*run) for run in runs))
    assert all(code in (EXIT_OK, 1) for code in codes)
    merged = load_manifests([out / f"manifest.shard-{k}-of-3.jsonl" for k in (1, 2, 3)])
    assert sum(1 for r in merged.values() if r.status == "ok") == 13
    assert env.ledger.images_billed == 13


async def test_three_shards_into_s3_on_one_redis_limit(
    env: FakeXAIServer,
    tmp_path: Path,
    redis_server: Any,
    s3_target: str,
    moto_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Three shards of one job into one bucket prefix, sharing one Redis limit: every item once
    in the store, nothing paid twice, one local manifest per shard (default names) and a copy of
    each uploaded beside the images; no image file on local disk."""
    pytest.importorskip("obstore")
    from conftest import S3_SECRET_KEY, open_multipart_uploads
    from obstore.store import from_url

    monkeypatch.chdir(tmp_path)
    jobs = _job_file(tmp_path / "jobs.jsonl")
    target = f"{s3_target}/shared"
    limit = ("--shared-limit", redis_server.url, "--rps", "50", "--plain")
    runs = [("batch", str(jobs), "-o", target, "--shard", f"{k}/3", *limit) for k in (1, 2, 3)]
    codes = await asyncio.gather(*(cli(*run) for run in runs))
    assert all(code in (EXIT_OK, 1) for code in codes)
    bucket = s3_target[len("s3://") :]
    base = tmp_path / f"xai-images-{bucket}-shared.manifest.jsonl"
    manifests = [shard_manifest(base, k, 3) for k in (1, 2, 3)]
    merged = load_manifests(manifests)
    ok = {i: r for i, r in merged.items() if r.status == "ok"}
    assert len(ok) == 13
    assert env.ledger.images_billed == 13
    store = from_url(s3_target)
    keys = {m["path"] for batch in store.list() for m in batch}
    images = {k for k in keys if k.startswith("shared/") and not k.endswith((".jsonl", ".html"))}
    assert images == {f"shared/{f.path}" for r in ok.values() for f in r.files}
    assert len(images) == 13
    assert {f"shared/{m.name}" for m in manifests} <= keys
    assert open_multipart_uploads(moto_endpoint, bucket) == []
    local = await asyncio.to_thread(lambda: [p.name for p in tmp_path.rglob("*")])
    assert not [n for n in local if n.endswith((".png", ".jpg", ".jpeg", ".webp"))]
    printed = capsys.readouterr().out
    assert f"images:   {target}" in printed
    assert "uploaded: s3://" in printed
    assert S3_SECRET_KEY not in printed
