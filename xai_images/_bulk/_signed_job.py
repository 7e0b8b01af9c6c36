"""Signed uploads for a bulk job (``client.bulk(..., upload_urls=True)``, CLI
``batch --upload-urls``), real-time and Batch API: xAI PUTs each image straight into the store.

The Batch-API source signs each item as it adds it (`SignedJob.sign`, valid for the batch's
lifetime by default) and keeps nothing of the URLs: its results are matched back to the keys
by image index when they are saved. Both sources save through `Engine._save_images`, which
hands an item over to `SignedJob.saved`.

Per item, `SignedJob.send` signs one PUT URL per image (keys ``{id}-{index}.jpg``, the same
`plan_uploads` as ``images.send_to_store``), sends the request with ``output.upload_urls``, and
confirms the objects after the answer (`collect_uploads`: a HEAD per key, size and etag). The
answer is kept with each image URL (its signed URL: a bearer secret) replaced by the object's
location (``s3://bucket/key``), so no signed URL reaches the manifest, a record or an event.
`SignedJob.files` turns the confirmed objects into the item's files (key, size, etag; no
sha256: the bytes never pass through this client) and each image xAI could not upload into
an `UploadFailedError` (billed, not stored).
"""

from __future__ import annotations

import datetime
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

import attrs

from .._api._models import ImagesResponse
from .._api._uploads import UploadPlan, collect_uploads, plan_uploads
from .._errors import ValidationError
from .._results._files import SavedImage

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .._api._models import GeneratedImage
    from .._api._requests import Request
    from .._api._uploads import StoreUploads
    from .._results._objstore import StoreOutput
    from ._manifest import PendingImage
    from ._store_job import StoreJob
    from ._tally import Item

__all__ = ["BATCH_UPLOAD_EXPIRY", "SignedJob"]

BATCH_UPLOAD_EXPIRY = datetime.timedelta(hours=24)
"""How long the signed URLs of a Batch-API item stay valid by default (a batch's lifetime)."""


class SignedJob:
    """The signed-upload state of one real-time bulk run."""

    def __init__(
        self,
        store: StoreJob | None,
        expires_in: datetime.timedelta | float | None,
        default: datetime.timedelta | None = None,
    ) -> None:
        if store is None:
            raise ValidationError(
                "upload_urls", True, "an object-store output_dir (s3://bucket/prefix, gs://...)"
            )
        self.store = store
        self.expires_in = expires_in if expires_in is not None else default
        self._uploads: dict[Item, StoreUploads] = {}

    async def send(self, client: Any, item: Item, output: StoreOutput) -> ImagesResponse:
        """Sign, send and confirm one item's images; the answer comes back without URLs."""
        plan = await plan_uploads(
            output, item.request, name=item.id, expires_in=self.expires_in, deferred=False
        )
        signed = attrs.evolve(item.request, output={"upload_urls": list(plan.urls)})
        response: ImagesResponse = await client.images.send(signed, origin=item)
        uploads = self._uploads[item] = await collect_uploads(plan, response)
        # Each image's URL (its signed URL) is replaced by the object's location.
        where = {u.index: u.location for u in uploads.images}
        return attrs.evolve(
            response,
            data=tuple(
                attrs.evolve(image, url=where.get(image.index)) if image.url else image
                for image in response.data
            ),
        )

    async def sign(self, item: Item, output: StoreOutput) -> Request:
        """``item``'s request with signed upload URLs (the Batch-API path: its results are
        matched back to the keys by image index, so nothing about the URLs is kept)."""
        plan = await plan_uploads(
            output, item.request, name=item.id, expires_in=self.expires_in, deferred=False
        )
        return attrs.evolve(item.request, output={"upload_urls": list(plan.urls)})

    async def saved(
        self, item: Item, images: Sequence[GeneratedImage], output: StoreOutput, progress: Any
    ) -> tuple[list[SavedImage], list[PendingImage], list[BaseException]]:
        """What `Engine._save_images` returns for an item whose images xAI uploaded: its stored
        objects as files, nothing to fetch again, and its upload failures; counted."""
        uploads = self._uploads.pop(item, None)
        if uploads is None:  # a Batch-API result: confirm the objects now
            n = item.request.n or 1
            keys = tuple(output.key_for(f"{item.id}-{i}", "image/jpeg") for i in range(n))
            answer = ImagesResponse(data=tuple(images))
            uploads = await collect_uploads(UploadPlan(output, keys, ()), answer)
        saved, errors = self._files(uploads)
        progress.images += len(saved)
        progress.bytes += sum(s.bytes for s in saved)
        return saved, [], errors

    def _files(self, uploads: StoreUploads) -> tuple[list[SavedImage], list[BaseException]]:
        saved: list[SavedImage] = []
        errors: list[BaseException] = []
        for image in uploads.images:
            if image.error is not None:
                errors.append(image.error)
            elif image.stored:
                assert image.size is not None
                name = PurePosixPath(image.key).name
                saved.append(
                    SavedImage(
                        path=PurePosixPath(name),  # type: ignore[arg-type]  # a key, not a file
                        bytes=image.size,
                        sha256="",
                        mime_type="image/jpeg",
                        source="upload",
                        url=None,
                        index=image.index,
                        request_id=uploads.request_id,
                        location=image.location,
                        key=image.key,
                    )
                )
                self.store.etags[image.key] = image.etag
        return saved, errors

    def forget(self, item: Item) -> None:
        """Drop what is kept for ``item`` (it ended another way)."""
        self._uploads.pop(item, None)
