"""SharedRateLimiter: one budget per API key across processes, on a real redis-server."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio

from xai_images import (
    AsyncClient,
    ConfigurationError,
    RateLimitError,
    SharedLimitError,
    SharedRateLimiter,
)
from xai_images._ui._cli import EXIT_USAGE, main
from xai_images.testing import FakeXAIServer, Reply

# Real-clock pacing against a server that answers 429: run where the machine is quiet.
pytestmark = pytest.mark.realtime

if TYPE_CHECKING:
    from conftest import RedisServer

redis_asyncio = pytest.importorskip("redis.asyncio")

# For URLs of servers that are not running; a running one is the `redis_server` fixture's
# (tests/conftest.py), with its own password.
PASSWORD = "s3cret-pw"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeXAIServer]:
    async with FakeXAIServer(rps_limit=5) as server:
        yield server


def _ok_count(server: FakeXAIServer) -> int:
    return sum(1 for r in server.ledger.api_requests() if r.status == 200)


WORKER = """
import asyncio, sys
from xai_images import AsyncClient

async def main(base_url, key, url, count):
    async with AsyncClient(
        api_key=key, base_url=base_url, rate_limit=5, shared_limit=url, max_retries=0
    ) as client:
        await asyncio.gather(*(client.images.generate("p") for _ in range(count)))

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
"""


async def test_processes_on_one_key_never_exceed_the_limit(
    redis_server: RedisServer, fake: FakeXAIServer
) -> None:
    """Four processes at 5 rps on one key draw no 429 from a server enforcing 5 rps."""
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", WORKER, fake.base_url, "key-a", redis_server.url, "5"
        )
        for _ in range(4)
    ]
    codes = await asyncio.gather(*(p.wait() for p in procs))
    # The fake answers 429 whenever a request would make any sliding 1 s window hold more than
    # 5 accepted requests, so no 429 means no such window was ever sent.
    assert fake.ledger.rate_limited == 0
    assert codes == [0, 0, 0, 0]
    assert _ok_count(fake) == 20


async def test_two_keys_do_not_share_a_budget(redis_server: RedisServer) -> None:
    """A pause on one key does not hold back a limiter on another key."""
    a = SharedRateLimiter(redis_server.url, api_key="key-a", rate=5)
    b = SharedRateLimiter(redis_server.url, api_key="key-b", rate=5)
    try:
        await a.acquire()
        a.on_rate_limited(30.0)
        await asyncio.wait_for(b.acquire(), timeout=10)
        assert b.current_rate == 5
        assert a.key != b.key
    finally:
        await a.aclose()
        await b.aclose()
    probe = SharedRateLimiter(redis_server.url, api_key="key-a", rate=5)
    try:
        # key-a is paused for 30 s: a new limiter on it is told to wait, not given a slot.
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(probe.acquire(), timeout=1)
    finally:
        await probe.aclose()


async def test_redis_holds_no_api_key(redis_server: RedisServer) -> None:
    """The budget's Redis key is a hash of the API key; the key itself is nowhere in Redis."""
    secret = "xai-SECRET-key-0123456789"
    limiter = SharedRateLimiter(redis_server.url, api_key=secret, rate=5)
    try:
        await limiter.acquire()
        limiter.on_rate_limited(None)
    finally:
        await limiter.aclose()
    expected = "xai-images:rl:" + hashlib.sha256(secret.encode()).hexdigest()[:16]
    redis = redis_asyncio.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        keys = await redis.keys("*")
        assert keys == [expected]
        values = await redis.hgetall(expected)
    finally:
        await redis.aclose()
    dump = repr(keys) + repr(values) + repr(limiter)
    assert secret not in dump
    assert "SECRET" not in dump


async def test_unreachable_redis_at_start_raises_before_any_request(
    fake: FakeXAIServer,
) -> None:
    """Redis down at start: SharedLimitError naming the URL without its password, nothing sent."""
    port = _free_port()
    client = AsyncClient(
        api_key="k",
        base_url=fake.base_url,
        rate_limit=5,
        shared_limit=f"redis://:{PASSWORD}@127.0.0.1:{port}/0",
    )
    try:
        with pytest.raises(SharedLimitError) as info:
            async with client:
                await client.images.generate("p")
    finally:
        await client.aclose()
    assert f"127.0.0.1:{port}" in str(info.value)
    assert PASSWORD not in str(info.value)
    assert fake.ledger.requests_started == 0


async def test_redis_restart_mid_run_waits_then_resumes_paced(
    redis_server: RedisServer, fake: FakeXAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis killed mid-run: requests wait (no unpaced sending), then resume after a restart."""
    caplog.set_level(logging.WARNING, logger="xai_images")
    async with AsyncClient(
        api_key="k", base_url=fake.base_url, rate_limit=5, shared_limit=redis_server.url
    ) as client:

        async def worker() -> None:
            for _ in range(4):
                await client.images.generate("p")

        tasks = [asyncio.create_task(worker()) for _ in range(3)]
        await fake.wait_for(lambda ledger: ledger.requests_started >= 4)
        at_kill = fake.ledger.requests_started
        redis_server.stop()
        # Slots already handed out lie at most 0.5 s ahead (a few requests); after that nothing
        # may be sent while Redis is down.
        await asyncio.sleep(1.5)
        sent_while_down = fake.ledger.requests_started
        await asyncio.sleep(1.0)
        assert fake.ledger.requests_started == sent_while_down
        assert sent_while_down - at_kill <= 3
        redis_server.start()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=20)
    assert fake.ledger.rate_limited == 0
    assert _ok_count(fake) == 12
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("unreachable" in message for message in warnings)
    assert all(redis_server.password not in message for message in warnings)
    assert any("***" in message for message in warnings)


async def test_a_429_seen_by_one_client_slows_the_others(
    redis_server: RedisServer, fake: FakeXAIServer
) -> None:
    """A 429 answered to one client lowers the shared rate another process's limiter sees."""
    fake.enqueue(Reply.error(429))
    async with AsyncClient(
        api_key="k",
        base_url=fake.base_url,
        rate_limit=5,
        shared_limit=redis_server.url,
        max_retries=0,
    ) as client:
        with pytest.raises(RateLimitError):
            await client.images.generate("p")
    other = SharedRateLimiter(redis_server.url, api_key="k", rate=5)
    try:
        await other.acquire()
        assert other.current_rate < 4
        assert other.rate_limited_count == 0
    finally:
        await other.aclose()


async def test_the_shared_rate_recovers_after_a_429(redis_server: RedisServer) -> None:
    """After a 429 the shared rate climbs back to the configured rate within seconds."""
    a = SharedRateLimiter(redis_server.url, api_key="k", rate=5)
    try:
        await a.acquire()
        a.on_rate_limited(None)
    finally:
        await a.aclose()  # sends the report before closing
    b = SharedRateLimiter(redis_server.url, api_key="k", rate=5)
    try:
        await b.acquire()
        assert b.current_rate < 4
        # Recovery runs on the Redis clock; only the passing of time can show it.
        await asyncio.sleep(2.2)
        await b.acquire()
        assert b.current_rate == 5
    finally:
        await b.aclose()


def test_shared_limit_requires_rate_limit() -> None:
    """shared_limit without rate_limit is refused at construction."""
    with pytest.raises(ConfigurationError, match="rate_limit"):
        AsyncClient(api_key="k", shared_limit="redis://127.0.0.1:6379/0")


def test_shared_limit_must_be_a_redis_url() -> None:
    """A URL that is not redis:// is refused, without echoing its password."""
    with pytest.raises(ConfigurationError) as info:
        AsyncClient(api_key="k", rate_limit=5, shared_limit="http://u:topsecret@h:1/0")
    assert "topsecret" not in str(info.value)


def test_cli_reports_unreachable_redis(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """`generate --shared-limit` with Redis down exits with a usage error naming the URL."""
    port = _free_port()
    code = main(
        [
            "generate",
            "p",
            "--api-key",
            "k",
            "--base-url",
            f"http://127.0.0.1:{_free_port()}/v1",
            "-o",
            str(tmp_path),
            "--shared-limit",
            f"redis://:{PASSWORD}@127.0.0.1:{port}/0",
        ]
    )
    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert f"127.0.0.1:{port}" in err
    assert PASSWORD not in err
