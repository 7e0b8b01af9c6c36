"""Bulk jobs into an object store (``output_dir="s3://bucket/prefix"``, ``gs://``, ``az://``,
``memory://`` or an `Output` that is not a local directory).

What differs from a job into a local directory, and lives here:

- The manifest stays a local file. Its default is
  ``./xai-images-<bucket>-<prefix>.manifest.jsonl`` in the current directory (`default_manifest`);
  it records keys, sizes and sha256 (never URLs of the store).
- When the run ends, a copy of the manifest is uploaded beside the images under the manifest's
  file name (`upload_beside`), and so can the gallery page (``index.html``, relative links to the
  keys: it shows the images wherever the prefix is served over HTTP).
- An image that was paid for but could not be stored (after the store's retries) is spilled to a
  local directory beside the manifest (`spill_dir`: ``<manifest stem>.spill/``) and recorded with
  ``FileRecord.spilled_to`` naming the local file; resume counts it as kept (never paid again).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from .._results._files import safe_component
from .._results._local import LocalDirectory
from .._results._objstore import is_store_url
from .._results._output import write_object
from .._results._targets import is_output

if TYPE_CHECKING:
    from .._api._models import GeneratedImage
    from .._results._files import SavedImage
    from .._results._output import Output
    from .._results._transfers import Transfers
    from ._manifest import FileRecord, ManifestRecord, PendingImage
    from ._tally import Item

__all__ = [
    "StoreJob",
    "default_manifest",
    "is_store_target",
    "kept_in_store",
    "locate",
    "spill_dir",
    "spilled_intact",
    "upload_beside",
]

logger = logging.getLogger("xai_images")

_UPLOAD_CHUNK = 1024 * 1024


def is_store_target(target: object) -> bool:
    """Whether a bulk job's ``output_dir`` names an object store rather than a local directory."""
    if isinstance(target, str):
        return is_store_url(target)
    return is_output(target) and not isinstance(target, LocalDirectory)


def _target_url(target: object) -> str:
    return target if isinstance(target, str) else str(target.url)  # type: ignore[attr-defined]


def default_manifest(target: object) -> Path:
    """The default manifest of a store job: ``./xai-images-<bucket>-<prefix>.manifest.jsonl``
    (absolute, in the current directory)."""
    url = _target_url(target)
    rest = url.split("://", 1)[-1].split("?", 1)[0].split("#", 1)[0]
    rest = rest.rpartition("@")[2]  # never user info
    slug = "-".join(part for part in rest.split("/") if part) or "store"
    return Path.cwd() / f"xai-images-{safe_component(slug)}.manifest.jsonl"


def spill_dir(manifest: Path) -> Path:
    """Where a store job keeps images it paid for but could not store: beside the manifest."""
    return manifest.with_name(f"{manifest.stem}.spill")


def _spill_ok(f: FileRecord) -> bool:
    assert f.spilled_to is not None
    try:
        return os.stat(f.spilled_to).st_size == f.bytes
    except OSError:
        return False


async def spilled_intact(f: FileRecord) -> bool:
    """Whether the local copy of a spilled image is there with its recorded size."""
    return await asyncio.to_thread(_spill_ok, f)


async def kept_in_store(output: Output, files: Sequence[FileRecord]) -> list[FileRecord]:
    """The files of an earlier record still intact in the store (or in the spill directory)."""
    kept: list[FileRecord] = []
    for f in files:
        if f.spilled_to is not None:
            if await spilled_intact(f):
                kept.append(f)
        elif not f.sha256:  # uploaded by xAI through a signed URL: size and etag
            if await _uploaded_intact(output, f):
                kept.append(f)
        elif await output.verify(f.path, size=f.bytes, sha256=f.sha256):
            kept.append(f)
    return kept


async def _uploaded_intact(output: Any, f: FileRecord) -> bool:
    head = getattr(output, "head", None)
    found = await head(f.path) if head is not None else None
    if found is None:
        return False
    size, _sha256, etag = found
    return bool(size == f.bytes and (f.etag is None or etag == f.etag))


async def upload_beside(output: Output, key: str, path: Path, mime_type: str) -> str:
    """Upload the local file ``path`` into ``output`` as ``key`` (replacing it); return the
    object's location. Read in a thread, chunk by chunk."""
    handle = await asyncio.to_thread(open, path, "rb")

    async def chunks() -> AsyncIterator[bytes]:
        while chunk := await asyncio.to_thread(handle.read, _UPLOAD_CHUNK):
            yield chunk

    try:
        stored = await write_object(output, key, mime_type, chunks(), on_exists="overwrite")
    finally:
        await asyncio.to_thread(handle.close)
    return stored.location


async def upload_bytes(output: Output, key: str, data: bytes, mime_type: str) -> str:
    """Upload ``data`` (a small page) into ``output`` as ``key``; return its location."""
    stored = await write_object(output, key, mime_type, data, on_exists="overwrite")
    return stored.location


def describe(target: Any) -> str:
    """The target as output may show it (no credentials, no query)."""
    from .._results._objstore import shown_target

    return shown_target(_target_url(target))


class StoreJob:
    """What a bulk engine keeps for a job into an object store (``None`` for a local one)."""

    def __init__(self, target: str | Output, manifest: Path) -> None:
        self.target = target
        self.url = describe(target)
        self.manifest = manifest
        self.spill_dir = spill_dir(manifest)
        self.spilled = 0  # images of this run kept in the spill directory
        self.uploaded: list[str] = []  # locations of the manifest copy and gallery page
        self._spills: dict[int, str] = {}  # id(SavedImage) -> local spill file
        self.etags: dict[str, str | None] = {}  # key -> etag of an object xAI uploaded

    @classmethod
    def of(cls, target: object, manifest: str | os.PathLike[str] | None) -> StoreJob | None:
        """The store job for a bulk job's ``output_dir``, or ``None`` for a local directory."""
        if not is_store_target(target):
            return None
        path = Path(manifest).resolve() if manifest is not None else default_manifest(target)
        return cls(target, path)  # type: ignore[arg-type]

    async def kept(self, output: Output, files: Sequence[FileRecord]) -> list[FileRecord]:
        """See `kept_in_store`."""
        return await kept_in_store(output, files)

    def with_spills(self, record: ManifestRecord, files: Sequence[SavedImage]) -> ManifestRecord:
        """``record`` with ``spilled_to`` set on the files of this run that were spilled and
        ``etag`` on those xAI uploaded."""
        spilled = {s.key: self._spills.pop(id(s)) for s in files if id(s) in self._spills}
        etags = {s.key: self.etags.pop(s.key) for s in files if s.key in self.etags}
        if not spilled and not etags:
            return record
        return attrs.evolve(
            record,
            files=tuple(
                attrs.evolve(f, spilled_to=spilled.get(f.path), etag=etags.get(f.path))
                if f.path in spilled or f.path in etags
                else f
                for f in record.files
            ),
        )

    async def spill(
        self,
        transfers: Transfers,
        item: Item,
        images: Sequence[GeneratedImage],
        results: Sequence[object],
        saved: list[SavedImage],
        pending: list[PendingImage],
        errors: list[BaseException],
    ) -> tuple[list[SavedImage], list[PendingImage], list[BaseException]]:
        """Keep in the spill directory every image the store refused after it was paid for
        (fetched again from its URL, or decoded again); what cannot be spilled stays pending."""
        from .._errors import StoreError
        from ._manifest import PendingImage

        if not any(isinstance(r, StoreError) for r in results):
            return saved, pending, errors
        local = await transfers.output(str(self.spill_dir), field="spill directory")
        saved, pending, errors = [], [], []
        for image, result in zip(images, results, strict=True):
            if isinstance(result, StoreError):
                stem = safe_component(f"{item.id}-{image.index}")
                try:
                    kept = await transfers.store(image, local, stem, on_exists="overwrite")
                except Exception as exc:
                    logger.warning("%s: could not spill image %d: %s", item.id, image.index, exc)
                else:
                    key = result_key(result, kept)
                    kept = attrs.evolve(kept, key=key)
                    self._spills[id(kept)] = str(kept.path)
                    self.spilled += 1
                    logger.warning(
                        "%s: image %d could not be stored in %s (%s); kept in %s",
                        item.id,
                        image.index,
                        self.url,
                        result,
                        kept.path,
                    )
                    saved.append(kept)
                    continue
            if isinstance(result, BaseException):
                errors.append(result)
                pending.append(PendingImage(image.index, image.url, image.revised_prompt))
            else:
                saved.append(result)  # type: ignore[arg-type]
        return saved, pending, errors

    async def finish(self, output: Output | None) -> None:
        """Upload a copy of the manifest and the gallery page beside the images (a failure is
        logged: the local manifest stays the record)."""
        if output is None or not await asyncio.to_thread(self.manifest.is_file):
            return
        from ._gallery import render_gallery
        from ._manifest import load_manifest

        page = f"{self.manifest.stem}.html"
        try:
            self.uploaded.append(
                await upload_beside(output, self.manifest.name, self.manifest, "application/jsonl")
            )
            records = await asyncio.to_thread(load_manifest, self.manifest)
            html = await asyncio.to_thread(
                render_gallery, records.values(), self.spill_dir, title=self.url
            )
            data = html.encode("utf-8", "xmlcharrefreplace")
            self.uploaded.append(await upload_bytes(output, page, data, "text/html"))
        except Exception as exc:
            logger.warning("could not upload the manifest copy or gallery to %s: %s", self.url, exc)


def result_key(error: object, kept: SavedImage) -> str:
    """The key a spilled image was meant for: its spill file's name (same stem and type)."""
    return kept.key or Path(kept.path).name


def locate(
    output_dir: object, manifest: str | os.PathLike[str] | None
) -> tuple[StoreJob | None, str, Path, Path]:
    """Where a bulk job's images, manifest and local files go: ``(store job or None, target
    as shown, local directory, manifest)``. A local ``output_dir`` is made absolute (a later
    chdir cannot move the job); a store job's local directory is its manifest's."""
    store = StoreJob.of(output_dir, manifest)
    if store is not None:
        return store, store.url, store.manifest.parent, store.manifest
    local = Path(output_dir).resolve()  # type: ignore[arg-type]
    path = Path(manifest) if manifest is not None else local / "manifest.jsonl"
    return None, str(local), local, path
