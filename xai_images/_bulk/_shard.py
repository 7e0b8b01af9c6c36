"""One job across machines: a deterministic split of a job file by item id, and several
manifests read back as one.

``--shard K/N`` keeps the items whose id hashes to shard K (1-based) of N. The id is the
item's own, or the one derived from its content (`derive_id`); identical requests share a
derived id, so they land in the same shard, in the same order, and get the same ``-2``, ``-3``
suffixes as in an unsharded run. A line that cannot be read is kept by the shard of
``line-<number>``, so every shard reports each item exactly once between them. Each shard
writes its own manifest (``manifest.shard-K-of-N.jsonl`` by default); `load_manifests` reads
several back as one (summary, gallery, retry).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TypeVar

from .._api._requests import derive_id
from .._errors import ValidationError
from ._jobs import InvalidJob
from ._manifest import ManifestRecord, load_manifest

__all__ = [
    "load_manifests",
    "parse_shard",
    "select_shard",
    "shard_index",
    "shard_key",
    "shard_manifest",
]

_SHARD = re.compile(r"\s*(\d{1,6})\s*/\s*(\d{1,6})\s*")

_J = TypeVar("_J")


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` as ``(K, N)``.

    Raises:
        ValidationError: not ``K/N`` with ``1 <= K <= N``.
    """
    match = _SHARD.fullmatch(text) if isinstance(text, str) else None
    if match is None or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise ValidationError("shard", text, "K/N with 1 <= K <= N, e.g. 2/3")
    return int(match.group(1)), int(match.group(2))


def shard_key(job: object) -> str:
    """The id a job is sharded by: its own, derived from its content, or its line."""
    if isinstance(job, InvalidJob):
        return f"line-{job.line}"
    own = getattr(job, "id", None)
    if isinstance(own, str) and own:
        return own
    try:
        return derive_id(job)  # type: ignore[arg-type]
    except Exception:  # a malformed request is reported by the shard of its repr
        return repr(job)


def shard_index(key: str, count: int) -> int:
    """The 1-based shard of ``key`` among ``count``: stable across machines and runs."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % count + 1


def select_shard(jobs: Iterable[_J], shard: int, count: int) -> list[_J]:
    """The jobs of shard ``shard`` of ``count``, in job order."""
    return [job for job in jobs if shard_index(shard_key(job), count) == shard]


def shard_manifest(manifest: str | os.PathLike[str], shard: int, count: int) -> Path:
    """The manifest of one shard: ``manifest.jsonl`` -> ``manifest.shard-2-of-3.jsonl``."""
    path = Path(manifest)
    return path.with_name(f"{path.stem}.shard-{shard}-of-{count}{path.suffix or '.jsonl'}")


def load_manifests(paths: Sequence[str | os.PathLike[str]]) -> dict[str, ManifestRecord]:
    """Several manifests (the shards of one job) as one: the latest record of each id, the
    manifests read in the order given.

    Raises:
        FileNotFoundError: a manifest does not exist.
    """
    merged: dict[str, ManifestRecord] = {}
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"no manifest at {path}")
        merged.update(load_manifest(path))
    return merged
