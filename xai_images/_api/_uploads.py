"""Signed uploads by xAI (``output.upload_urls``): the images go from xAI straight to a store.

`plan_uploads` names one key per image, refuses keys that are taken (a HEAD per key), and signs
one PUT URL per key with the store's credentials (obstore's ``sign_async``). The URLs go into
the request body only. `collect_uploads` reads the answer: each image's ``url`` is its upload
URL, matched back to its key; the objects are confirmed by a HEAD each (size and etag). A
``storage_error`` on an image (how the fake reports a failed PUT; the live API documents no
failure form) or an object missing after the answer is an `UploadFailedError` on that image:
billed, not stored. Signed URLs are bearer secrets: nothing returned here holds one.
"""

from __future__ import annotations

import datetime
import secrets
from pathlib import Path

import attrs

from .._errors import FileCollisionError, UploadFailedError, ValidationError
from .._results._objstore import StoreOutput, store_output
from ._models import ImagesResponse, Usage
from ._requests import Request

__all__ = [
    "DEFERRED_UPLOAD_EXPIRY",
    "REALTIME_UPLOAD_EXPIRY",
    "StoreUploads",
    "UploadPlan",
    "UploadedImage",
    "collect_uploads",
    "plan_uploads",
]

REALTIME_UPLOAD_EXPIRY = datetime.timedelta(minutes=15)
"""How long signed URLs of a real-time request stay valid by default."""

DEFERRED_UPLOAD_EXPIRY = datetime.timedelta(hours=2)
"""How long signed URLs of a deferred request stay valid by default."""

# The API's documented default type; the object's Content-Type is what xAI sent.
_KEY_MIME = "image/jpeg"


@attrs.frozen
class UploadedImage:
    """One image of a signed-upload request.

    Attributes:
        index: the image's position in its answer.
        key: the object's key, relative to the target.
        location: the object's URL (``s3://bucket/prefix/key``), never the signed URL.
        size: bytes stored (listed after the answer), or ``None`` when not stored.
        etag: the store's entity tag, when stored.
        error: why the image is not stored (billed, not stored), or ``None``.
        blocked: the image was withheld by moderation (nothing to upload).
    """

    index: int
    key: str
    location: str
    size: int | None = None
    etag: str | None = None
    error: UploadFailedError | None = attrs.field(default=None, eq=False)
    blocked: bool = False

    @property
    def stored(self) -> bool:
        """Whether the object is in the store."""
        return self.error is None and not self.blocked and self.size is not None


@attrs.frozen
class StoreUploads:
    """The answer to a signed-upload request (``client.images.send_to_store``).

    Attributes:
        images: one entry per requested image, in order.
        request_id: the API request id.
        usage: the cost, when the server reported it.
        target: the store target's URL.
    """

    images: tuple[UploadedImage, ...]
    request_id: str | None = None
    usage: Usage | None = None
    target: str = ""

    @property
    def stored(self) -> tuple[UploadedImage, ...]:
        """The images that are in the store."""
        return tuple(image for image in self.images if image.stored)

    @property
    def failed(self) -> tuple[UploadedImage, ...]:
        """The images that were billed but could not be stored."""
        return tuple(image for image in self.images if image.error is not None)

    def raise_for_failures(self) -> None:
        """Raise the first image's `UploadFailedError`, if any image failed to upload."""
        for image in self.images:
            if image.error is not None:
                raise image.error


@attrs.frozen
class UploadPlan:
    """The keys of one request's images and their signed URLs (kept out of reprs)."""

    output: StoreOutput
    keys: tuple[str, ...]
    urls: tuple[str, ...] = attrs.field(repr=False)


def _expiry(value: datetime.timedelta | float | None, deferred: bool) -> datetime.timedelta:
    if value is None:
        return DEFERRED_UPLOAD_EXPIRY if deferred else REALTIME_UPLOAD_EXPIRY
    if isinstance(value, datetime.timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return datetime.timedelta(seconds=value)
    raise ValidationError("expires_in", value, "a timedelta or positive seconds")


async def plan_uploads(
    target: str | StoreOutput,
    request: Request,
    *,
    name: str | None,
    expires_in: datetime.timedelta | float | None,
    deferred: bool,
) -> UploadPlan:
    """Check the target, name a key per image, and sign their PUT URLs.

    Raises:
        ValidationError: a bad ``expires_in`` or ``response_format="b64_json"``.
        StoreUnavailableError: the store cannot be written or signed for (Azure: refused).
        FileCollisionError: a key is taken (signed uploads never overwrite).
    """
    output = target if isinstance(target, StoreOutput) else store_output(target)
    if request.response_format == "b64_json":
        raise ValidationError(
            "response_format", request.response_format, '"url" (or unset) with signed uploads'
        )
    expiry = _expiry(expires_in, deferred)
    request.check(deferred=deferred)
    n = request.n or 1
    stem = name or request.id or secrets.token_hex(8)
    keys = tuple(output.key_for(f"{stem}-{index}", _KEY_MIME) for index in range(n))
    await output.check_writable()
    # A random stem (64 bits) cannot be taken; a given name is checked (a HEAD per key).
    taken = await output.stat(keys) if (name or request.id) else {}
    for key in sorted(taken):
        where = output.location(key)
        raise FileCollisionError(f"{where} already exists", path=Path(key))
    urls = await output.sign_uploads(keys, expires_in=expiry)
    return UploadPlan(output, keys, tuple(urls))


async def collect_uploads(plan: UploadPlan, response: ImagesResponse) -> StoreUploads:
    """Match the answer's images to their keys and confirm the objects (a HEAD per key)."""
    output = plan.output
    present = await output.stat(plan.keys)
    by_url = dict(zip(plan.urls, range(len(plan.keys)), strict=False))
    seen: set[int] = set()
    results: list[UploadedImage] = []
    for image in response.data:
        slot = by_url.get(image.url or "", image.index)
        if slot in seen or not 0 <= slot < len(plan.keys):
            continue
        seen.add(slot)
        key = plan.keys[slot]
        location = output.location(key)
        if image.blocked:
            results.append(UploadedImage(slot, key, location, blocked=True))
            continue
        reason = image.storage_error
        found = None if reason else present.get(key)
        if found is None:
            why = reason or "the object is not in the store after the answer"
            error = UploadFailedError(
                f"image {slot} was billed but not stored at {location}: {why}",
                location=location,
                key=key,
                reason=reason,
            )
            results.append(UploadedImage(slot, key, location, error=error))
            continue
        results.append(UploadedImage(slot, key, location, size=found[0], etag=found[1]))
    for slot, key in enumerate(plan.keys):
        if slot not in seen:  # dropped from the answer (moderation)
            results.append(UploadedImage(slot, key, output.location(key), blocked=True))
    results.sort(key=lambda item: item.index)
    return StoreUploads(
        tuple(results), request_id=response.request_id, usage=response.usage, target=output.url
    )
