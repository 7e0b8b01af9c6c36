"""The FastAPI example under ``uvicorn --workers 4``, its workers sharing one rate limit on Redis.

uvicorn runs as a child process (cwd ``examples/fastapi_service``, importing the installed
package) against a ``FakeXAIServer`` in the test's loop that enforces 5 requests/s with no burst:
more than 5 accepted API requests in any sliding 1 s window would be answered 429.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import pytest
import pytest_asyncio

from xai_images.testing import FakeXAIServer

# Real-clock pacing against a server that answers 429: run where the machine is quiet.
pytestmark = pytest.mark.realtime

if TYPE_CHECKING:
    from conftest import RedisServer

_REASON = "the FastAPI example needs fastapi and uvicorn: pip install -e '.[examples]'"
pytest.importorskip("fastapi", reason=_REASON)
pytest.importorskip("uvicorn", reason=_REASON)
pytest.importorskip("redis.asyncio")

APP_DIR = Path(__file__).resolve().parent.parent / "examples" / "fastapi_service"
WORKERS = 4
RATE = 5
LOAD = 30


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeXAIServer]:
    async with FakeXAIServer(rps_limit=RATE) as server:
        yield server


class Service:
    """The uvicorn master process and what its workers said while starting."""

    def __init__(self, url: str, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.url = url
        self.proc = proc
        self.log = log
        self.ready_pids: set[int] = set()


async def _wait_ready(service: Service) -> None:
    """Poll /healthz until every worker has answered once (a child process cannot be awaited)."""
    # A fresh connection per poll, so that the kernel may hand each to another worker.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
        for _ in range(600):
            if service.proc.returncode is not None:
                pytest.fail(f"uvicorn exited early:\n{service.log.read_text()}")
            try:
                async with http.get(service.url + "/healthz") as resp:
                    if resp.status == 200:
                        service.ready_pids.add((await resp.json())["pid"])
            except aiohttp.ClientConnectionError:
                pass  # not listening yet
            if len(service.ready_pids) == WORKERS:
                return
            await asyncio.sleep(0.02)
    pytest.fail(f"only {len(service.ready_pids)} of {WORKERS} workers answered /healthz")


@contextlib.asynccontextmanager
async def uvicorn_workers(
    fake: FakeXAIServer, tmp_path: Path, shared_limit: str | None
) -> AsyncIterator[Service]:
    """``uvicorn app:app --workers 4`` at 5 requests/s per client, stopped with SIGTERM after."""
    env = {k: v for k, v in os.environ.items() if k not in {"XAI_SHARED_LIMIT", "IMAGES_DIR"}}
    env.update(XAI_API_KEY=fake.api_key, XAI_BASE_URL=fake.base_url, XAI_RATE_LIMIT=str(RATE))
    if shared_limit is not None:
        env["XAI_SHARED_LIMIT"] = shared_limit
    port = _free_port()
    log = tmp_path / "uvicorn.log"
    with log.open("wb") as out:
        # `python -m` puts the cwd (the example's directory) first on sys.path, so `app` is the
        # example and `xai_images` the package installed in this environment.
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "uvicorn",
            "app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(WORKERS),
            "--log-level",
            "warning",
            cwd=APP_DIR,
            env=env,
            stdout=out,
            stderr=out,
        )
    service = Service(f"http://127.0.0.1:{port}", proc, log)
    try:
        await _wait_ready(service)
        yield service
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 20)
        assert code == 0, log.read_text()
        assert "Traceback" not in log.read_text()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


class Answer:
    """One POST /images as the caller saw it."""

    def __init__(self, status: int, pid: int, done: float) -> None:
        self.status = status
        self.pid = pid
        self.done = done


async def _fire(url: str, count: int) -> list[Answer]:
    """Send ``count`` POST /images, all concurrent, answered in the order they were sent."""
    async with aiohttp.ClientSession() as http:

        async def one(i: int) -> Answer:
            # Connections arriving all at once may all be taken by the first worker to wake (an
            # asyncio server accepts every queued connection in one go); arriving a few ms
            # apart, each goes to whichever worker wins it, so the load spreads over them.
            await asyncio.sleep(i * 0.02)
            async with http.post(url + "/images", json={"prompt": f"fox {i}"}) as resp:
                await resp.read()
                pid = int(resp.headers.get("X-Worker-Pid", "0"))
                return Answer(resp.status, pid, time.monotonic())

        return await asyncio.gather(*(one(i) for i in range(count)))


async def test_four_workers_share_one_rate_limit(
    redis_server: RedisServer, fake: FakeXAIServer, tmp_path: Path
) -> None:
    """Four uvicorn workers on one Redis limit serve a burst without a single 429 upstream."""
    async with uvicorn_workers(fake, tmp_path, redis_server.url) as service:
        answers = await _fire(service.url, LOAD)
    assert [a.status for a in answers] == [200] * LOAD
    # The fake answers 429 whenever a request would make any sliding 1 s window hold more than
    # 5 accepted requests: none means the four workers together never sent faster than that.
    assert fake.ledger.rate_limited == 0
    assert fake.ledger.images_billed == LOAD
    pids = {a.pid for a in answers}
    assert len(pids) > 1
    assert pids <= service.ready_pids
    # The figures, for `pytest -rP` (never asserted: speed is measured in benchmarks/).
    done = sorted(a.done for a in answers)
    print(f"worker pids {sorted(pids)}, combined rate {(LOAD - 1) / (done[-1] - done[0]):.2f}/s")


async def test_four_workers_pacing_alone_draw_429s(fake: FakeXAIServer, tmp_path: Path) -> None:
    """Control: without XAI_SHARED_LIMIT each worker paces itself, and together they draw 429s."""
    async with uvicorn_workers(fake, tmp_path, None) as service:
        load = asyncio.ensure_future(_fire(service.url, LOAD))
        try:
            await fake.wait_for(lambda ledger: ledger.rate_limited > 0, timeout=20)
        finally:
            # Enough shown; the callers hang up, which cancels the rest of the work (the
            # workers would otherwise retry their 429s for seconds) before uvicorn stops.
            load.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await load
    assert fake.ledger.rate_limited > 0
    print(f"429 answers {fake.ledger.rate_limited} of {len(fake.ledger.api_requests())}")
