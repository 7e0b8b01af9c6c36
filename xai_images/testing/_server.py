"""``FakeXAIServer``: the fake xAI API's lifecycle, its switches and the request ledger hook.

The endpoints live in their own modules: ``_images_api`` (generations, edits, deferred polls),
``_downloads`` (the image host), ``_batches`` (the Batch API) and ``_files`` (the Files API);
``_core`` holds what they share. Settings are documented in ``_settings``.
"""

from __future__ import annotations

import asyncio
import collections
import random
from collections.abc import Callable
from typing import Any

import attrs
from aiohttp import web

from ._batches import BatchAPI
from ._core import Dropped, ServerCore, current_body
from ._downloads import ImageHost
from ._files import FilesAPI
from ._imagegen import image_data, variant_count
from ._images_api import ImageAPI
from ._ledger import Ledger, RecordedRequest
from ._replies import API_KINDS, DOWNLOAD_KINDS, Reply
from ._settings import FakeSettings, check_loopback

__all__ = ["BATCH_ROUTES", "FakeXAIServer"]

BATCH_ROUTES = frozenset(
    {
        "create",
        "list",
        "get",
        "add",
        "requests",
        "results",
        "cancel",
        "upload",
        "file",
        "delete",
        "content",
        "files",
    }
)


class FakeXAIServer(ServerCore):
    """A local fake of the xAI image API on 127.0.0.1 (see ``docs/architecture.md``).

    ::

        async with FakeXAIServer() as server:
            client = AsyncClient(api_key=server.api_key, base_url=server.base_url)

    Args:
        api_key: the key the server requires (other keys get 400, as xAI answers a wrong key).
            ``None``: any non-empty bearer token is accepted, and ``api_key`` is a default one.
        host: loopback address to bind (``127.x.x.x``, ``::1`` or ``localhost``).
        port: TCP port; 0 picks a free one.
        image_bytes: byte size of served images.
        image_format: ``"png"``, ``"jpeg"`` or ``"webp"``.
        **settings: any other ``FakeSettings`` field.

    Raises:
        ValueError: ``host`` is not a loopback address.
        TypeError: an unknown setting was given.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        image_bytes: int = 4096,
        image_format: str = "png",
        **settings: Any,
    ) -> None:
        self._bind_host = check_loopback(host)
        self._port = port
        self._initial = FakeSettings(image_bytes=image_bytes, image_format=image_format, **settings)
        super().__init__(api_key, attrs.evolve(self._initial))
        self._files = FilesAPI(self)
        self._batches = BatchAPI(self, self._files)
        self._image_api = ImageAPI(self)
        self._runner: web.AppRunner | None = None
        self._api_active = 0
        self._downloads_active = 0

    def __repr__(self) -> str:
        state = self._origin or "not started"
        return f"<FakeXAIServer {state}>"

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The API base URL, ``http://127.0.0.1:PORT/v1``.

        Raises:
            RuntimeError: the server is not started.
        """
        return self.origin + "/v1"

    @property
    def port(self) -> int:
        """The bound TCP port (after ``start()``)."""
        return int(self.origin.rsplit(":", 1)[1])

    async def start(self) -> None:
        """Bind and start serving.

        Raises:
            RuntimeError: already started.
            OSError: the port could not be bound.
        """
        if self._runner is not None:
            raise RuntimeError("FakeXAIServer is already started")
        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[self._record])
        for part in (self._image_api, ImageHost(self), self._batches, self._files):
            app.router.add_routes(part.routes())
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5
        )
        await runner.setup()
        site = web.TCPSite(runner, self._bind_host, self._port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        port = runner.addresses[0][1]
        host = f"[{self._bind_host}]" if ":" in self._bind_host else self._bind_host
        self._origin = f"http://{host}:{port}"
        self._batches.start()

    async def stop(self) -> None:
        """Stop serving; idempotent. Open connections are closed."""
        self._batches.stop()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> FakeXAIServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # --- switches -----------------------------------------------------------------------------

    def enqueue(self, *replies: Reply) -> None:
        """Script the answers of the next API POSTs (generations and edits), first in first out.

        Raises:
            ValueError: a reply kind that only applies to downloads.
        """
        for reply in replies:
            if reply.kind not in API_KINDS:
                raise ValueError(f"Reply.{reply.kind}() is for downloads: use enqueue_download()")
        self.api_queue.extend(replies)

    def enqueue_download(self, *replies: Reply) -> None:
        """Script the answers of the next image downloads, first in first out.

        Raises:
            ValueError: a reply kind that only applies to API requests.
        """
        for reply in replies:
            if reply.kind not in DOWNLOAD_KINDS:
                raise ValueError(f"Reply.{reply.kind}() is for API requests: use enqueue()")
        self.download_queue.extend(replies)

    def enqueue_batch(self, *replies: Reply, route: str | None = None) -> None:
        """Script the answers of the next Batch and Files API calls, first in first out.

        ``Reply.error`` answers without running the call; ``Reply.drop`` runs it (a batch is
        created, requests are added) and then closes the connection without an answer;
        ``Reply.hang(s)`` runs it and answers ``s`` seconds later; ``Reply.ok`` passes.

        Args:
            route: only calls of this route use these replies: ``"create"``, ``"list"``,
                ``"get"``, ``"add"``, ``"requests"``, ``"results"``, ``"cancel"``,
                ``"upload"``, ``"file"``, ``"delete"``, ``"content"`` or ``"files"``
                (listing files). ``None``: the next call of any route without its own replies.

        Raises:
            ValueError: a download-only reply kind, or an unknown route.
        """
        if route is not None and route not in BATCH_ROUTES:
            raise ValueError(
                f"unknown route {route!r}: use one of {', '.join(sorted(BATCH_ROUTES))}"
            )
        for reply in replies:
            if reply.kind not in API_KINDS:
                raise ValueError(f"Reply.{reply.kind}() is for downloads: use enqueue_download()")
        self.batch_queues.setdefault(route, collections.deque()).extend(replies)

    def reset(self) -> None:
        """Restore the constructor's settings (in place), empty the queues and the ledger.

        Batches and files already created stay.
        """
        for field in attrs.fields(FakeSettings):
            setattr(self.settings, field.name, getattr(self._initial, field.name))
        self.api_queue.clear()
        self.download_queue.clear()
        self.batch_queues.clear()
        self._window.clear()
        self._batches.reset_limits()
        self.ledger.clear()
        self._rng = random.Random(self.settings.fault_seed)
        self._rng_seed = self.settings.fault_seed

    async def wait_for(self, predicate: Callable[[Ledger], bool], *, timeout: float = 10.0) -> None:
        """Wait until ``predicate(server.ledger)`` holds, checked whenever the ledger changes.

        Lets a test act at a precise point without sleeping, e.g. cancel a client once its
        request is billed during ``Reply.hang``:
        ``await server.wait_for(lambda ledger: ledger.images_billed == 1)``.

        Raises:
            asyncio.TimeoutError: the predicate did not hold within ``timeout`` seconds.
        """
        if predicate(self.ledger):
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (predicate, future)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(future, timeout)
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)

    async def wait_for_requests(self, count: int, *, timeout: float = 10.0) -> None:
        """Wait until ``count`` requests (API or downloads) have arrived since the last reset.

        Raises:
            asyncio.TimeoutError: fewer requests arrived within ``timeout`` seconds.
        """
        await self.wait_for(lambda ledger: ledger.requests_started >= count, timeout=timeout)

    def warm(self) -> None:
        """Build every image variant for the current format and size now, not on first use.

        For benchmarks: the first request of each variant otherwise pays for building it.
        """
        fmt, size = self.settings.image_format, self.settings.image_bytes
        for variant in range(variant_count(size)):
            image_data(fmt, size, variant)

    # --- plumbing -----------------------------------------------------------------------------

    @web.middleware
    async def _record(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        status = 0
        holder: list[Any] = [None]
        current_body.set(holder)
        ledger = self.ledger
        ledger.requests_started += 1
        is_api = request.path.startswith("/v1/")
        if is_api:
            self._api_active += 1
            ledger.peak_api_concurrency = max(ledger.peak_api_concurrency, self._api_active)
        else:
            self._downloads_active += 1
            ledger.peak_download_concurrency = max(
                ledger.peak_download_concurrency, self._downloads_active
            )
        self.wake_waiters()
        try:
            response: web.StreamResponse = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            if is_api and exc.status in (404, 405):
                # Unknown API routes answer 404 in the API's error shape, as the real service does
                # (405 too: POST /v1/images/variations only collides with the deferred GET route).
                error = self.error(404, f"No route for {request.method} {request.path}.")
                status = error.status
                return error
            status = exc.status
            raise
        except Dropped:
            # Returning an unprepared response on a closed transport makes aiohttp give up quietly.
            return web.Response(status=200)
        finally:
            if is_api:
                self._api_active -= 1
            else:
                self._downloads_active -= 1
            self.ledger.requests.append(
                RecordedRequest(
                    request.method,
                    request.path,
                    dict(request.headers),
                    holder[0],
                    status,
                    request.raw_path,
                )
            )
            self.wake_waiters()
