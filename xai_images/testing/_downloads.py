"""The image host: ``GET /imgen/{name}``, with expiry, ranges and scripted faults.

Real-time and batch result URLs are served here alike; neither needs a key (a download that
carries one is counted in ``ledger.downloads_with_auth``).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from ._core import Dropped, ServerCore, StoredImage
from ._imagegen import MIME_TYPES, image_data
from ._replies import Reply

__all__ = ["ImageHost"]


class ImageHost:
    """Serves the images a ``ServerCore`` registered."""

    def __init__(self, core: ServerCore) -> None:
        self._core = core

    def routes(self) -> list[web.RouteDef]:
        """The routes to add to the application."""
        return [web.get("/imgen/{name}", self._download, allow_head=False)]

    def _expired(self, image: StoredImage) -> bool:
        settings = self._core.settings
        if image.used and settings.url_single_use:
            return True
        now = self._core.now()
        if image.expires_at is not None:
            return now >= image.expires_at
        return settings.url_ttl is not None and now - image.created >= settings.url_ttl

    async def _download(self, request: web.Request) -> web.StreamResponse:
        core = self._core
        if "Authorization" in request.headers:
            core.ledger.downloads_with_auth += 1
        image_id = request.match_info["name"].split(".", 1)[0]
        image = core.images.get(image_id)
        if image is None:
            return web.Response(status=404, text="Not found")
        settings = core.settings
        if self._expired(image):
            return web.Response(status=settings.expired_status, text="Expired")
        if settings.download_latency > 0:
            await asyncio.sleep(settings.download_latency)
        script = core.download_queue.popleft() if core.download_queue else None
        fault_rate = settings.download_fault_rate
        if script is None and fault_rate and core.random() < fault_rate:
            script = Reply.error(500) if core.random() < 0.5 else Reply.truncate()
        truncate_rate = settings.download_truncate_rate
        if script is None and truncate_rate and core.random() < truncate_rate:
            script = Reply.truncate()
        if script is not None and script.kind == "error":
            headers = dict(script.headers or {})
            if script.retry_after is not None:
                headers["Retry-After"] = script.retry_after
            return web.Response(status=script.status, text="Scripted error", headers=headers)
        if script is not None and script.kind == "drop":
            core.drop(request)

        data = image_data(image.fmt, image.size, image.variant)
        start = 0
        status = 200
        headers = {"Content-Type": MIME_TYPES[image.fmt]}
        range_header = request.headers.get("Range")
        if settings.support_range:
            headers["Accept-Ranges"] = "bytes"
            if range_header:
                start = _range_start(range_header, len(data))
                if start < 0:
                    return web.Response(
                        status=416, headers={"Content-Range": f"bytes */{len(data)}"}
                    )
                if start > 0:
                    status = 206
                    headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = memoryview(data)[start:]

        # A StreamResponse even for the plain case: web.Response warns about bodies over 1 MiB.
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = len(body)
        await response.prepare(request)
        if script is None or script.kind == "ok":
            await response.write(body)
        else:
            await self._write_faulty(request, response, script, body)
        await response.write_eof()
        image.used = True
        core.ledger.images_downloaded += 1
        return response

    async def _write_faulty(
        self,
        request: web.Request,
        response: web.StreamResponse,
        script: Reply,
        body: memoryview,
    ) -> None:
        cut = int(len(body) * min(max(script.fraction, 0.0), 1.0))
        if script.kind == "truncate":
            cut = min(cut, len(body) - 1)
        await response.write(body[:cut])
        if script.kind == "stall":
            seconds = (
                script.seconds if script.seconds is not None else self._core.settings.stall_seconds
            )
            await asyncio.sleep(seconds)
        if script.kind == "truncate" or script.abort:
            # close(), not abort(): the partial body already written must still reach the client.
            transport = request.transport
            if transport is not None:
                transport.close()
            raise Dropped
        await response.write(body[cut:])


def _range_start(header: str, length: int) -> int:
    """Start offset of a ``bytes=N-`` range; 0 for a form we ignore; -1 when unsatisfiable."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return 0
    first, _, _last = spec.strip().partition("-")
    if not first.isdigit():
        return 0
    start = int(first)
    return -1 if start >= length else start
