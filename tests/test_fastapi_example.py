"""The FastAPI example service (``examples/fastapi_service``) under a real uvicorn server.

uvicorn serves the example app on a free loopback port in the test's own event loop, talking to
a ``FakeXAIServer``; the tests call the service with aiohttp like any HTTP client would.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from xai_images.testing import FakeXAIServer, Reply

_REASON = "the FastAPI example needs fastapi and uvicorn: pip install -e '.[examples]'"
pytest.importorskip("fastapi", reason=_REASON)
uvicorn = pytest.importorskip("uvicorn", reason=_REASON)

APP_PATH = Path(__file__).resolve().parent.parent / "examples" / "fastapi_service" / "app.py"
# Several 256 KiB chunks, so that streaming is really chunk by chunk.
IMAGE_BYTES = 900_000


def _load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fastapi_service_app", APP_PATH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # pydantic resolves the models' postponed annotations through sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class _Uvicorn(uvicorn.Server):  # type: ignore[misc,name-defined]
    """uvicorn in the test's loop: no signal handlers, and an event once it accepts requests."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.ready.set()


class Service:
    def __init__(self, url: str, app: Any, fake: FakeXAIServer, images_dir: Path) -> None:
        self.url = url
        self.app = app
        self.fake = fake
        self.images_dir = images_dir

    async def idle(self) -> None:
        """Wait until the service has no call in flight (each cleaned up after itself)."""
        await asyncio.wait_for(self.app.state.work.wait_idle(), 10)


@pytest.fixture
def fake_xai_server_options() -> dict[str, Any]:
    """Images near 1 MB, so that a save takes long enough to be interrupted."""
    return {"image_bytes": IMAGE_BYTES}


@pytest_asyncio.fixture
async def service(
    fake_xai_server: FakeXAIServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> AsyncIterator[Service]:
    """The example app under uvicorn, with IMAGES_DIR, against the fresh fake server."""
    fake = fake_xai_server
    monkeypatch.setenv("XAI_API_KEY", fake.api_key)
    monkeypatch.setenv("XAI_BASE_URL", fake.base_url)
    example = _load_example()
    images_dir = tmp_path / "images"
    # No gc.freeze(): it would freeze the whole test process.
    settings = example.Settings(images_dir=str(images_dir), freeze_gc=False)
    app = example.create_app(settings)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = _Uvicorn(uvicorn.Config(app, log_level="warning", lifespan="on"))
    serving = asyncio.ensure_future(server.serve(sockets=[sock]))
    ready = asyncio.ensure_future(server.ready.wait())
    await asyncio.wait({serving, ready}, return_when=asyncio.FIRST_COMPLETED)
    try:
        if serving.done():
            serving.result()  # raises why uvicorn stopped
            pytest.fail("uvicorn stopped before it was ready")
        port = sock.getsockname()[1]
        yield Service(f"http://127.0.0.1:{port}", app, fake, images_dir)
    finally:
        ready.cancel()
        server.should_exit = True
        await serving
        sock.close()
        sys.modules.pop("fastapi_service_app", None)


def _sdk_tasks() -> list[asyncio.Task[Any]]:
    """Tasks still running code of the SDK or of the example (the fake server excluded)."""
    found = []
    for task in asyncio.all_tasks():
        for frame in task.get_stack():
            name = frame.f_code.co_filename
            if ("xai_images" in name and "testing" not in name) or "fastapi_service" in name:
                found.append(task)
                break
    return found


async def test_post_images_answers_urls_and_keeps_copies(service: Service) -> None:
    """POST /images answers one URL per image and saves each under IMAGES_DIR."""
    async with aiohttp.ClientSession() as http:
        async with http.post(service.url + "/images", json={"prompt": "a fox", "n": 2}) as resp:
            assert resp.status == 200
            answer = await resp.json()
        assert [image["url"] is not None for image in answer["images"]] == [True, True]
        for image in answer["images"]:
            async with http.get(image["url"]) as resp:
                served = await resp.read()
            assert (service.images_dir / image["file"]).read_bytes() == served
    assert service.fake.ledger.images_billed == 2


async def test_stream_passes_the_image_bytes_through(service: Service) -> None:
    """GET /images/stream answers exactly the bytes the image host served, as image/png."""
    async with aiohttp.ClientSession() as http:
        async with http.get(service.url + "/images/stream", params={"prompt": "a fox"}) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "image/png"
            parts = [chunk async for chunk in resp.content.iter_any()]
        (download,) = service.fake.ledger.downloads()
        async with http.get(service.fake.origin + download.path) as resp:
            served = await resp.read()
    assert len(parts) > 1
    assert b"".join(parts) == served
    assert len(served) == IMAGE_BYTES


async def test_stream_disconnect_stops_the_download(service: Service) -> None:
    """A caller hanging up mid-stream stops the download upstream and leaves no task behind."""
    service.fake.enqueue_download(Reply.stall(fraction=0.5, seconds=60))
    async with aiohttp.ClientSession() as http:
        resp = await http.get(service.url + "/images/stream", params={"prompt": "a fox"})
        assert resp.status == 200
        assert await resp.content.readany()
        resp.close()  # drops the connection mid-body
    # The fake's handler ends long before its 60 s pause: the service closed the download.
    await service.fake.wait_for(lambda ledger: len(ledger.downloads()) == 1)
    await service.idle()
    assert service.fake.ledger.images_downloaded == 0
    assert _sdk_tasks() == []


async def test_post_disconnect_leaves_no_partial_file(service: Service) -> None:
    """A caller hanging up while its images are saved cancels the save: no file, no .part."""
    service.fake.enqueue_download(Reply.stall(fraction=0.5, seconds=60))

    async def call() -> None:
        async with aiohttp.ClientSession() as http:
            await http.post(service.url + "/images", json={"prompt": "a fox"})

    caller = asyncio.ensure_future(call())
    # The SDK writes received bytes to a .part file after a short pause; polling is the only way
    # to see it appear.
    for _ in range(1000):
        if list(service.images_dir.glob(".*.part")):
            break
        await asyncio.sleep(0.01)
    assert list(service.images_dir.glob(".*.part")), "the save never started"
    caller.cancel()  # closes the connection
    with contextlib.suppress(asyncio.CancelledError):
        await caller
    await service.fake.wait_for(lambda ledger: len(ledger.downloads()) == 1)
    await service.idle()
    assert list(service.images_dir.iterdir()) == []
    assert service.fake.ledger.images_downloaded == 0
    assert _sdk_tasks() == []


async def test_healthz_counts_nothing_in_flight_when_idle(service: Service) -> None:
    """GET /healthz answers the number of calls in flight, 0 when idle, and the worker's pid."""
    async with aiohttp.ClientSession() as http, http.get(service.url + "/healthz") as resp:
        assert await resp.json() == {"in_flight": 0, "pid": os.getpid()}
