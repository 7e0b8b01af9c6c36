"""The command line's object-store and shard options: ``-o s3://...`` with ``--upload-urls``
(signed uploads by xAI) for ``generate`` / ``edit``, and ``--shard K/N`` for ``batch``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._errors import ValidationError

__all__ = [
    "add_shard_flag",
    "add_upload_flags",
    "apply_shard",
    "bulk_target",
    "send_signed",
    "signed_options",
]


def signed_options(args: Any, output_dir: Path | str) -> dict[str, Any]:
    """The run options of ``batch --upload-urls [--upload-expires S]`` (checked at once)."""
    if not args.upload_urls:
        return {}
    if not isinstance(output_dir, str):
        raise ValidationError(
            "--upload-urls", True, "an object-store -o (s3://bucket/prefix, gs://...)"
        )
    return {"upload_urls": True, "upload_expires": args.upload_expires}


def bulk_target(value: str, local: Callable[[str], Path]) -> Path | str:
    """``batch -o``: an object-store URL as it is (checked writable when the run starts, before
    anything is billed), anything else through ``local`` (a directory or ``file://`` URL)."""
    from .._results._objstore import is_store_url

    return value if is_store_url(value) else local(value)


def add_upload_flags(group: Any, positive_float: Callable[[str], float]) -> None:
    """``--upload-urls`` and ``--upload-expires`` for a single request."""
    group.add_argument(
        "--upload-urls",
        action="store_true",
        help="let xAI PUT the images straight into the -o store through signed URLs "
        "(S3 or GCS; the images never pass through this machine)",
    )
    group.add_argument(
        "--upload-expires",
        type=positive_float,
        metavar="S",
        help="seconds the signed upload URLs stay valid (default 900)",
    )


def add_shard_flag(batch: argparse.ArgumentParser) -> None:
    """``--shard K/N`` for a bulk job."""
    batch.add_argument(
        "--shard",
        metavar="K/N",
        help="run only shard K of N (split by item id, the same on every machine); each shard "
        "keeps its own manifest, manifest.shard-K-of-N.jsonl unless --manifest is given",
    )


def apply_shard(
    jobs: Any, shard: str | None, output_dir: Path | str, manifest: Path | None
) -> tuple[Any, Path | None]:
    """The jobs of ``--shard K/N`` (all of them without it: a job file stays a path, read
    lazily by the run) and the manifest to write. Blocking with a shard (it reads the file)."""
    if shard is None:
        return jobs, manifest
    from .._bulk._jobs import iter_jobs
    from .._bulk._shard import parse_shard, select_shard, shard_manifest

    index, count = parse_shard(shard)
    if manifest is None:
        from .._bulk._store_job import default_manifest

        default = (
            default_manifest(output_dir)
            if isinstance(output_dir, str)
            else output_dir / "manifest.jsonl"
        )
        manifest = shard_manifest(default, index, count)
    if isinstance(jobs, (str, os.PathLike)):
        jobs = iter_jobs(jobs)  # only this shard's jobs are kept
    return select_shard(jobs, index, count), manifest


async def send_signed(
    client: Any, request: Any, store: Any, expires: float | None, out: Callable[[str], None]
) -> bool:
    """Send ``request`` with signed upload URLs into ``store``; print each stored object's URL
    and each failure (billed, not stored). Returns whether every image was stored."""
    uploads = await client.images.send_to_store(request, store, expires_in=expires)
    for image in uploads.stored:
        out(image.location)
    for image in uploads.failed:
        sys.stderr.write(f"{image.error}\n")
    if uploads.usage and uploads.usage.cost_usd is not None:
        sys.stderr.write(f"cost: ${uploads.usage.cost_usd:.4f}\n")
    return not uploads.failed
