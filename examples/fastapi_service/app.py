"""An image service on FastAPI and xai-images, meant to be copied and adapted.

- ``POST /images`` generates images and answers their URLs (and, when ``IMAGES_DIR`` is set,
  keeps a copy of each image there first: image URLs expire).
- ``GET /images/stream?prompt=...`` generates one image and streams its bytes through to the
  caller as they arrive from the image host, never holding the whole image.
- ``GET /healthz`` answers ``{"in_flight": N, "pid": P}``.

One ``AsyncClient`` per worker process, opened and closed in the app's lifespan, shared by every
request (one connection pool, one rate limit). A caller that hangs up cancels its work: the
generation call or download stops, the connection goes back to the pool, and a file being saved
is removed before it was ever renamed into place. Run it with ``uvicorn app:app --workers 4``;
the environment variables are in README.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from starlette.types import Receive, Scope, Send

import xai_images

_T = TypeVar("_T")

# Longest prompt the API takes (xai_images validates it too; here it becomes a 422 early).
MAX_PROMPT = 10_000


@dataclass(frozen=True)
class Settings:
    """What the service reads from its environment (see README.md)."""

    rate_limit: float | None = None
    shared_limit: str | None = None
    images_dir: str | None = None
    # gc.freeze() after startup (see the lifespan); off only where the process is shared,
    # such as a test run that serves the app in-process.
    freeze_gc: bool = True

    @classmethod
    def from_env(cls) -> Settings:
        rate = os.environ.get("XAI_RATE_LIMIT")
        return cls(
            rate_limit=float(rate) if rate else None,
            shared_limit=os.environ.get("XAI_SHARED_LIMIT") or None,
            images_dir=os.environ.get("IMAGES_DIR") or None,
        )


def make_client(settings: Settings) -> xai_images.AsyncClient:
    """The worker's one client; the key and base URL come from XAI_API_KEY / XAI_BASE_URL."""
    options: dict[str, Any] = {"rate_limit": settings.rate_limit}
    if settings.shared_limit:
        # One budget for every worker and machine on the key (needs xai-images[shared]).
        options["shared_limit"] = settings.shared_limit
    return xai_images.AsyncClient(**options)


class InFlight:
    """Counts the calls being served, so that health checks and tests can see them end."""

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def begin(self) -> None:
        self.count += 1
        self._idle.clear()

    def end(self) -> None:
        self.count -= 1
        if self.count == 0:
            self._idle.set()

    @contextlib.contextmanager
    def track(self) -> Iterator[None]:
        self.begin()
        try:
            yield
        finally:
            self.end()

    async def wait_idle(self) -> None:
        await self._idle.wait()


class ClientGone(Exception):
    """The caller disconnected; its work was cancelled and cleaned up."""


async def _until_disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def cancel_on_disconnect(request: Request, work: Awaitable[_T]) -> _T:
    """Run ``work``, cancelling it if the caller hangs up first.

    uvicorn does not cancel a handler when its client goes away (the answer would just be
    dropped), so a generation and its downloads would run on for nobody. Waiting for the work
    after cancelling it lets its cleanup (closing a download, removing a ``.part`` file) finish
    before the handler returns.

    Raises:
        ClientGone: the caller disconnected before the work finished.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_until_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        task.cancel()  # no-op once done
        watcher.cancel()
        await asyncio.wait({task, watcher})
    if task.cancelled():
        raise ClientGone
    return task.result()


class ImageStream(StreamingResponse):
    """Streams an image's chunks and closes the image stream however the response ends.

    On a disconnect Starlette cancels the task that sends the body; if that happens while a
    chunk is being sent, the chunk iterator is left suspended rather than closed, and would hold
    its download slot and connection until garbage collection. Closing it here releases them at
    once.
    """

    def __init__(
        self,
        chunks: AsyncGenerator[bytes, None],
        first: bytes,
        media_type: str,
        on_close: Callable[[], None],
    ) -> None:
        self._chunks = chunks
        self._on_close = on_close
        self._body_gen = self._body(first)
        super().__init__(self._body_gen, media_type=media_type)

    async def _body(self, first: bytes) -> AsyncGenerator[bytes, None]:
        yield first
        async for chunk in self._chunks:
            yield chunk

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            try:
                await self._body_gen.aclose()
                await self._chunks.aclose()
            finally:
                self._on_close()


def _media_type(head: bytes) -> str:
    # The SDK has already checked that these are image bytes; this only picks the header.
    if head.startswith(b"\x89PNG"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


class GenerateIn(BaseModel):
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT)
    n: int = Field(default=1, ge=1, le=10)


class ImageOut(BaseModel):
    url: str | None
    file: str | None = None  # name under IMAGES_DIR when the service keeps copies


class GenerateOut(BaseModel):
    request_id: str | None
    images: list[ImageOut]
    blocked: int


# Errors of the SDK as HTTP answers: what the caller did wrong is theirs (4xx), the rest is
# the upstream's (502/504). Messages of xai-images never carry the API key.
_STATUS: list[tuple[type[Exception], int]] = [
    (xai_images.ValidationError, 422),
    (xai_images.BadRequestError, 422),
    (xai_images.ImageBlockedError, 422),
    (xai_images.RateLimitError, 429),
    (xai_images.APITimeoutError, 504),
    (xai_images.DownloadStalledError, 504),
]


def _error_answer(request: Request, exc: Exception) -> Response:
    if isinstance(exc, ClientGone):
        return Response(status_code=499)  # nobody reads it; the status is for access logs
    status = next((code for cls, code in _STATUS if isinstance(exc, cls)), 502)
    headers = {}
    if isinstance(exc, xai_images.RateLimitError) and exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    return JSONResponse({"error": str(exc)}, status_code=status, headers=headers)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; ``settings`` default to the environment, read at startup."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        config = settings or Settings.from_env()
        async with make_client(config) as client:
            app.state.client = client
            app.state.settings = config
            app.state.work = InFlight()
            # Everything alive now (modules, the app, the client) lives as long as the worker:
            # taken out of the collector's generations, a full collection no longer walks it.
            # In benchmarks/bench_web.py this cut the worst event-loop stall from 22-34 ms of
            # CPU (a full collection over ~48,000 objects) to 9-18 ms.
            if config.freeze_gc:
                gc.collect()
                gc.freeze()
            yield

    app = FastAPI(title="images", lifespan=lifespan)
    app.add_exception_handler(xai_images.XAIImagesError, _error_answer)
    app.add_exception_handler(ClientGone, _error_answer)

    @app.post("/images")
    async def create_images(body: GenerateIn, request: Request, response: Response) -> GenerateOut:
        """Generate ``n`` images; answer their URLs (and file names, with IMAGES_DIR)."""
        client: xai_images.AsyncClient = request.app.state.client
        # Which worker process served the call: shows how uvicorn --workers spreads the load.
        response.headers["X-Worker-Pid"] = str(os.getpid())
        images_dir = request.app.state.settings.images_dir

        async def work() -> GenerateOut:
            resp = await client.images.generate(body.prompt, n=body.n)
            files: list[str | None] = [None] * len(resp.images)
            if images_dir:
                files = [saved.path.name for saved in await resp.save(images_dir)]
            return GenerateOut(
                request_id=resp.request_id,
                images=[
                    ImageOut(url=image.url, file=name)
                    for image, name in zip(resp.images, files, strict=True)
                ],
                blocked=resp.blocked_count,
            )

        with request.app.state.work.track():
            return await cancel_on_disconnect(request, work())

    @app.get("/images/stream")
    async def stream_image(
        request: Request, prompt: str = Query(min_length=1, max_length=MAX_PROMPT)
    ) -> Response:
        """Generate one image and stream its bytes through as they arrive."""
        client: xai_images.AsyncClient = request.app.state.client
        work: InFlight = request.app.state.work

        async def start() -> tuple[AsyncGenerator[bytes, None], bytes]:
            resp = await client.images.generate(prompt, n=1)
            if not resp.images:
                raise xai_images.ImageBlockedError("the image was withheld by moderation")
            # A generator underneath; typed as one here so that it can be closed explicitly.
            chunks: AsyncGenerator[bytes, None] = resp.images[0].stream()  # type: ignore[assignment]
            try:
                # The first chunk before the answer's status: a failed download is still a
                # clean error status here, not a 200 cut short.
                first = await anext(chunks)
            except BaseException:
                await chunks.aclose()
                raise
            return chunks, first

        work.begin()
        try:
            chunks, first = await cancel_on_disconnect(request, start())
        except BaseException:
            work.end()
            raise
        return ImageStream(chunks, first, _media_type(first), on_close=work.end)

    @app.get("/healthz")
    async def healthz(request: Request) -> dict[str, int]:
        """Liveness, with the number of calls in flight in this worker and its process id."""
        return {"in_flight": request.app.state.work.count, "pid": os.getpid()}

    return app


app = create_app()
