"""``output.upload_urls``: the fake PUTs each image to the caller's signed URL, as xAI does.

Per xAI's OpenAPI document the API uploads image ``i`` to ``upload_urls[i]`` with HTTP PUT and a
``Content-Type`` equal to the image's ``mime_type``, and answers the upload URL as the image's
``url``. A failed PUT has no documented form; the fake answers it as the image's
``storage_error`` (an assumption, as in ``docs/storage.md``). The fake only PUTs to loopback
addresses: for any other URL the image keeps its download URL and answers a ``storage_error``;
it never logs the URLs.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from ._core import ServerCore
from ._imagegen import image_data

__all__ = ["upload_images", "upload_urls_of"]


def upload_urls_of(body: Mapping[str, Any]) -> list[str] | None:
    """The request's ``output.upload_urls``, or ``None`` when it has none."""
    output = body.get("output")
    if not isinstance(output, Mapping):
        return None
    urls = output.get("upload_urls")
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        return None
    return list(urls)


def _loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _image_bytes(core: ServerCore, item: Mapping[str, Any]) -> bytes | None:
    url = item.get("url")
    if not isinstance(url, str):
        return None
    image_id = urlsplit(url).path.rsplit("/", 1)[-1].split(".", 1)[0]
    stored = core.images.pop(image_id, None)
    if stored is None:
        return None
    return image_data(stored.fmt, stored.size, stored.variant)


async def upload_images(core: ServerCore, images: list[dict[str, Any]], urls: list[str]) -> None:
    """PUT every deliverable image of ``images`` (made in ``url`` format) to its URL, in
    place: ``url`` becomes the upload URL, or the image gets a ``storage_error``."""
    pending: list[tuple[int, dict[str, Any], str, bytes]] = []
    for index, (item, url) in enumerate(zip(images, urls, strict=False)):
        if not _loopback(url):
            # Never PUT off this machine: the image keeps its download URL, and says why.
            if item.get("url"):
                item["storage_error"] = (
                    f"output.upload_urls[{index}]: the fake server only uploads to loopback "
                    "addresses"
                )
            continue
        data = _image_bytes(core, item)
        if data is None:
            continue  # moderated: nothing to upload
        item["url"] = url  # before any await: an answer rendered meanwhile shows the upload URL
        pending.append((index, item, url, data))
    async with aiohttp.ClientSession() as session:
        for index, item, url, data in pending:
            failure = None
            if core.settings.upload_fail_rate and core.random() < core.settings.upload_fail_rate:
                failure = "upload failed (fake: upload_fail_rate)"
            else:
                headers = {"Content-Type": str(item.get("mime_type") or "image/jpeg")}
                try:
                    async with session.put(url, data=data, headers=headers) as answer:
                        await answer.read()
                        if answer.status >= 300:
                            failure = f"upload failed: the store answered HTTP {answer.status}"
                except aiohttp.ClientError as exc:
                    failure = f"upload failed: {type(exc).__name__}"
            if failure is None:
                core.ledger.images_uploaded += 1
            else:
                item["storage_error"] = f"output.upload_urls[{index}]: {failure}"
