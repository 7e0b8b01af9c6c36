"""Downloads of URL images against the fake server: retries, resume, stalls, expiry, integrity."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from xai_images import (
    AsyncClient,
    DownloadError,
    DownloadOptions,
    DownloadStalledError,
    ImageExpiredError,
    ImagesResponse,
    IntegrityError,
    RetryPolicy,
)
from xai_images.testing import FakeXAIServer, Reply

IMAGE_BYTES = 200_000


pytestmark = pytest.mark.usefixtures("xai_instant_retries")


@pytest.fixture
def fake_xai_server_options() -> dict[str, Any]:
    """Large images, and stalls long enough to trip the stall timeout."""
    return {"image_bytes": IMAGE_BYTES, "stall_seconds": 2.0}


def options(**overrides: object) -> DownloadOptions:
    """Download options with short timeouts for tests."""
    values: dict[str, object] = {
        "stall_timeout": 0.3,
        "connect_timeout": 2.0,
        "retry": RetryPolicy(max_attempts=3, max_elapsed=30.0),
    }
    values.update(overrides)
    return DownloadOptions(**values)  # type: ignore[arg-type]


@pytest.fixture
def xai_client_options() -> dict[str, Any]:
    """Short download timeouts."""
    return {"download": options()}


async def generate(client: AsyncClient, n: int = 1) -> ImagesResponse:
    return await client.images.generate("a fox in snow", n=n)


async def served_bytes(url: str) -> bytes:
    """The image as the fake serves it, fetched without the SDK."""
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return await resp.read()


def assert_clean(directory: Path, *, finals: int = 0) -> None:
    """No temporary files anywhere under ``directory`` and exactly ``finals`` final files."""
    files = [p for p in directory.rglob("*") if p.is_file()]
    assert [p for p in files if p.name.endswith(".part")] == []
    assert len(files) == finals


def downloads(server: FakeXAIServer) -> list[tuple[str | None, int]]:
    """(Range header, status) of every download the fake saw."""
    return [(r.headers.get("Range"), r.status) for r in server.ledger.downloads()]


async def test_url_image_saved_byte_exact(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """A URL image is written byte for byte, with its size, sha256 and sniffed type recorded."""
    resp = await generate(client)
    saved = await resp.data[0].save(tmp_path / "fox")
    expected = await served_bytes(resp.data[0].url or "")
    assert saved.path == tmp_path / "fox.png"
    assert saved.path.read_bytes() == expected
    assert saved.bytes == len(expected) == IMAGE_BYTES
    assert saved.sha256 == hashlib.sha256(expected).hexdigest()
    assert (saved.mime_type, saved.source, saved.url) == ("image/png", "url", resp.data[0].url)
    assert saved.request_id == resp.request_id
    assert not saved.skipped


async def test_downloads_never_carry_authorization(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """The API key is never sent to the image host, for saves and for streams."""
    resp = await generate(client, n=3)
    await resp.save(tmp_path)
    async for _ in resp.data[0].stream():
        pass
    assert server.ledger.images_downloaded == 4
    assert server.ledger.downloads_with_auth == 0
    assert all(r.header("Authorization") is None for r in server.ledger.downloads())


async def test_truncated_download_resumes_with_range(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """A body cut short is resumed with a Range request and the file is complete."""
    resp = await generate(client)
    server.enqueue_download(Reply.truncate(0.5))
    saved = await resp.data[0].save(tmp_path / "fox.png")
    seen = downloads(server)
    assert len(seen) == 2
    assert (seen[1][0] or "").startswith("bytes=")
    assert seen[1][1] == 206
    assert saved.path.read_bytes() == await served_bytes(resp.data[0].url or "")
    assert saved.sha256 == hashlib.sha256(saved.path.read_bytes()).hexdigest()
    assert_clean(tmp_path, finals=1)


async def test_truncated_download_restarts_without_range_support(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """When the server ignores Range, the download restarts from zero and is still exact."""
    server.settings.support_range = False
    resp = await generate(client)
    server.enqueue_download(Reply.truncate(0.7))
    saved = await resp.data[0].save(tmp_path / "fox.png")
    assert [status for _, status in downloads(server)][-1] == 200
    expected = await served_bytes(resp.data[0].url or "")
    assert saved.path.read_bytes() == expected
    assert saved.bytes == len(expected)
    assert saved.sha256 == hashlib.sha256(expected).hexdigest()
    assert_clean(tmp_path, finals=1)


@pytest.mark.parametrize("support_range", [True, False])
async def test_image_larger_than_a_write_batch_resumes_exactly(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path, support_range: bool
) -> None:
    """An image written in several batches, cut after some were written, ends byte-exact."""
    server.settings.image_bytes = 3 * 1024 * 1024 + 17
    server.settings.support_range = support_range
    resp = await generate(client)
    server.enqueue_download(Reply.truncate(0.6))
    saved = await resp.data[0].save(tmp_path / "big.png")
    assert [status for _, status in downloads(server)][-1] == (206 if support_range else 200)
    expected = await served_bytes(resp.data[0].url or "")
    assert saved.path.read_bytes() == expected
    assert saved.sha256 == hashlib.sha256(expected).hexdigest()
    assert_clean(tmp_path, finals=1)


async def test_save_all_recreates_a_directory_removed_between_calls(
    client: AsyncClient, tmp_path: Path
) -> None:
    """A directory created by an earlier save_all and then removed is created again."""
    target = tmp_path / "out"
    await (await generate(client)).save(target)
    for path in target.iterdir():
        path.unlink()
    target.rmdir()
    saved = await (await generate(client)).save(target)
    assert saved[0].path.parent == target
    assert saved[0].path.stat().st_size == IMAGE_BYTES


async def test_stall_is_detected_and_retried(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """A body that stops arriving is aborted after stall_timeout and resumed."""
    resp = await generate(client)
    server.enqueue_download(Reply.stall(0.4, seconds=5.0))
    saved = await resp.data[0].save(tmp_path / "fox.png")
    assert len(downloads(server)) == 2
    assert saved.path.read_bytes() == await served_bytes(resp.data[0].url or "")
    assert_clean(tmp_path, finals=1)


async def test_stall_on_every_attempt_raises_stalled(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """Stalls until retries run out raise DownloadStalledError and leave no file."""
    resp = await generate(client)
    server.enqueue_download(*[Reply.stall(0.3, seconds=5.0) for _ in range(3)])
    with pytest.raises(DownloadStalledError, match=r"after 3 attempts.*no data"):
        await resp.data[0].save(tmp_path / "fox.png")
    assert_clean(tmp_path)


async def test_slow_body_below_min_speed_is_retried(server: FakeXAIServer, tmp_path: Path) -> None:
    """A body slower than min_speed over the window is treated as stalled and resumed."""
    opts = options(stall_timeout=5.0, min_speed=50e6, speed_window=0.05)
    async with AsyncClient(api_key=server.api_key, base_url=server.base_url, download=opts) as api:
        resp = await generate(api)
        server.enqueue_download(Reply.stall(0.5, seconds=0.3))
        saved = await resp.data[0].save(tmp_path / "fox.png")
    assert len(downloads(server)) == 2
    assert saved.bytes == IMAGE_BYTES


async def test_server_error_then_success(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """A 500 answer is retried and the next attempt's body is saved."""
    resp = await generate(client)
    server.enqueue_download(Reply.error(500), Reply.error(503))
    saved = await resp.data[0].save(tmp_path / "fox.png")
    assert [status for _, status in downloads(server)] == [500, 503, 200]
    assert saved.bytes == IMAGE_BYTES


async def test_server_errors_until_retries_run_out(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """Persistent 5xx answers raise DownloadError naming the status, with no file left."""
    resp = await generate(client)
    server.enqueue_download(*[Reply.error(500) for _ in range(3)])
    with pytest.raises(DownloadError, match="HTTP 500") as info:
        await resp.data[0].save(tmp_path / "fox.png")
    assert info.value.url == resp.data[0].url
    assert len(downloads(server)) == 3
    assert_clean(tmp_path)


async def test_long_retry_after_is_not_slept(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """A 503 asking to wait longer than max_retry_after fails at once instead of sleeping."""
    resp = await generate(client)
    server.enqueue_download(Reply.error(503, retry_after="3600"))
    with pytest.raises(DownloadError, match="3600"):
        await resp.data[0].save(tmp_path / "fox.png")
    assert len(downloads(server)) == 1


@pytest.mark.parametrize("status", [403, 404])
async def test_expired_url_is_a_distinct_error_not_retried(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path, status: int
) -> None:
    """An expired URL (403/404) raises ImageExpiredError at once, saying URLs expire."""
    server.settings.url_single_use = True
    server.settings.expired_status = status
    resp = await generate(client)
    await resp.data[0].save(tmp_path / "first.png")
    with pytest.raises(ImageExpiredError, match="expire") as info:
        await resp.data[0].save(tmp_path / "second.png")
    assert str(status) in str(info.value)
    assert downloads(server)[-1][1] == status
    assert len(downloads(server)) == 2
    assert_clean(tmp_path, finals=1)


async def test_truncated_on_every_attempt_is_integrity_error(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """Bodies cut short on every attempt raise IntegrityError and leave nothing behind."""
    server.settings.support_range = False
    resp = await generate(client)
    server.enqueue_download(*[Reply.truncate(0.5) for _ in range(3)])
    with pytest.raises(IntegrityError, match="cut short"):
        await resp.data[0].save(tmp_path / "fox.png")
    assert_clean(tmp_path)


async def test_dropped_connection_is_retried(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """A download whose connection drops before any answer is retried."""
    resp = await generate(client)
    server.enqueue_download(Reply.drop())
    saved = await resp.data[0].save(tmp_path / "fox.png")
    assert saved.bytes == IMAGE_BYTES
    assert_clean(tmp_path, finals=1)


async def test_cancelled_save_leaves_nothing(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """Cancelling a save mid-download removes the temporary file and re-raises."""
    resp = await generate(client)
    server.enqueue_download(Reply.stall(0.5, seconds=5.0))
    slow = options(stall_timeout=10.0)
    async with AsyncClient(api_key=server.api_key, base_url=server.base_url, download=slow) as api:
        again = await generate(api)
        server.enqueue_download(Reply.stall(0.5, seconds=5.0))
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(again.data[0].save(tmp_path / "fox.png"), 0.5)
    assert resp.data[0].url != again.data[0].url
    assert_clean(tmp_path)


async def test_stream_yields_the_whole_image(client: AsyncClient, server: FakeXAIServer) -> None:
    """stream() yields the raw bytes, in chunks no larger than chunk_size."""
    resp = await generate(client)
    chunks = [chunk async for chunk in resp.data[0].stream(chunk_size=16 * 1024)]
    assert b"".join(chunks) == await served_bytes(resp.data[0].url or "")
    assert all(len(chunk) <= 16 * 1024 for chunk in chunks)


async def test_stream_resumes_after_truncation(client: AsyncClient, server: FakeXAIServer) -> None:
    """A stream cut short after chunks were yielded continues with a Range request."""
    resp = await generate(client)
    server.enqueue_download(Reply.truncate(0.5))
    data = b"".join([chunk async for chunk in resp.data[0].stream()])
    assert data == await served_bytes(resp.data[0].url or "")
    assert downloads(server)[1][1] == 206


async def test_stream_without_range_cannot_restart_after_yielding(
    client: AsyncClient, server: FakeXAIServer
) -> None:
    """Without Range support, a stream broken after yielding raises instead of repeating bytes."""
    server.settings.support_range = False
    resp = await generate(client)
    server.enqueue_download(Reply.truncate(0.5))
    received: list[int] = []

    async def consume() -> None:
        async for chunk in resp.data[0].stream():
            received.append(len(chunk))

    with pytest.raises(DownloadError, match="cannot resume"):
        await consume()
    assert 0 < sum(received) < IMAGE_BYTES


# -- a tiny image host of our own, for what the fake does not do ---------------------------


PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 10


async def host(routes: web.RouteTableDef) -> web.AppRunner:
    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


def origin(runner: web.AppRunner) -> str:
    return f"http://127.0.0.1:{runner.addresses[0][1]}"


@contextlib.asynccontextmanager
async def own_host(
    routes: web.RouteTableDef, urls: list[str], **download: object
) -> AsyncIterator[ImagesResponse]:
    """Serve ``routes`` plus a generations endpoint whose images are ``urls`` (a bare path is on
    this host); yield one generation's answer, from a client on it with ``options(**download)``."""

    @routes.post("/v1/images/generations")
    async def generations(request: web.Request) -> web.Response:
        base = f"http://{request.host}"
        return web.json_response({"data": [{"url": u if "://" in u else base + u} for u in urls]})

    runner = await host(routes)
    try:
        async with AsyncClient(
            api_key="xai-k", base_url=origin(runner) + "/v1", download=options(**download)
        ) as api:
            yield await api.images.generate("x", n=len(urls))
    finally:
        await runner.cleanup()


async def test_non_image_answer_is_integrity_error(tmp_path: Path) -> None:
    """A 200 answer that is not an image (e.g. an HTML page) raises IntegrityError, no file."""
    routes = web.RouteTableDef()

    @routes.get("/page")
    async def page(_request: web.Request) -> web.Response:
        return web.Response(text="<html>sign in</html>" * 10, content_type="text/html")

    async with own_host(routes, ["/page"]) as resp:
        with pytest.raises(IntegrityError, match="not return an image"):
            await resp.data[0].save(tmp_path / "x")
    assert_clean(tmp_path)


async def test_redirect_to_image_is_followed(tmp_path: Path) -> None:
    """A redirect to the real image location is followed and the image saved."""
    routes = web.RouteTableDef()

    @routes.get("/short")
    async def short(_request: web.Request) -> web.Response:
        raise web.HTTPFound("/real.png")

    @routes.get("/real.png")
    async def real(_request: web.Request) -> web.Response:
        return web.Response(body=PNG, content_type="image/png")

    async with own_host(routes, ["/short"]) as resp:
        saved = await resp.data[0].save(tmp_path / "x")
    assert saved.path.read_bytes() == PNG


async def test_concurrency_bounds_downloads_in_flight(tmp_path: Path) -> None:
    """save_all never has more downloads in flight than its concurrency."""
    routes = web.RouteTableDef()
    state = {"now": 0, "peak": 0, "arrived": 0, "limit": 2}
    arrivals = asyncio.Condition()

    @routes.get("/{name}")
    async def image(_request: web.Request) -> web.Response:
        async with arrivals:
            rank, limit = state["arrived"], state["limit"]
            state["arrived"] += 1
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
            arrivals.notify_all()
            # Hold the slot until the limit's worth of downloads (or the last ones) arrived, so
            # that any download beyond the limit would overlap with them and show in the peak.
            wave_end = min(8, (rank // limit + 1) * limit)
            await arrivals.wait_for(lambda: state["arrived"] >= wave_end)
            state["now"] -= 1
        return web.Response(body=PNG, content_type="image/png")

    async with own_host(routes, [f"/{i}" for i in range(8)], concurrency=3) as resp:
        limited = await resp.save(tmp_path / "a", concurrency=2)
        peak_limited = state["peak"]
        state.update(peak=0, arrived=0, limit=3)
        await resp.save(tmp_path / "b")
    assert len(limited) == 8
    assert peak_limited == 2
    assert state["peak"] == 3


async def test_abandoned_stream_releases_its_slot(server: FakeXAIServer, tmp_path: Path) -> None:
    """Closing a stream early frees its download slot, so the next download can run."""
    opts = options(concurrency=1)
    async with AsyncClient(api_key=server.api_key, base_url=server.base_url, download=opts) as api:
        resp = await generate(api)
        async with contextlib.aclosing(resp.data[0].stream(chunk_size=1024)) as chunks:
            async for _ in chunks:
                break
        saved = await asyncio.wait_for(resp.data[0].save(tmp_path / "fox"), 10)
    assert saved.bytes == IMAGE_BYTES


async def test_connection_refused_is_download_error(tmp_path: Path) -> None:
    """An unreachable image host raises DownloadError (chained), never an aiohttp error."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with own_host(web.RouteTableDef(), [f"http://127.0.0.1:{port}/x.png"]) as resp:
        with pytest.raises(DownloadError, match="after 3 attempts") as info:
            await resp.data[0].save(tmp_path / "x")
    assert isinstance(info.value.__cause__, aiohttp.ClientError)
    assert_clean(tmp_path)


@pytest.mark.parametrize(
    "field", ["concurrency", "chunk_size", "stall_timeout", "connect_timeout", "min_speed"]
)
def test_download_options_reject_non_positive(field: str) -> None:
    """DownloadOptions refuses zero or negative sizes and timeouts."""
    with pytest.raises(ValueError, match=field):
        DownloadOptions(**{field: 0})  # type: ignore[arg-type]


def test_writer_pool_is_rebuilt_after_a_fork() -> None:
    """A forked child gets a fresh writer pool instead of the parent's (threadless) one."""
    from xai_images._results._files import WriterPool, _forget_executors

    pool = WriterPool()
    try:
        before = pool.executor()
        _forget_executors()  # what the after-fork hook runs in the child
        after = pool.executor()
        assert after is not None
        assert after is not before
        assert after.submit(sum, [1, 2]).result() == 3
    finally:
        if before is not None:
            before.shutdown()
        pool.shutdown()
