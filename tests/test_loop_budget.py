"""The caller's event loop stays free: request starts and base64 decoding are admitted a bounded
amount per loop iteration, and the writer threads start when the client opens."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import pytest

from xai_images import AsyncClient, DownloadOptions
from xai_images._hooks import Event, RequestSent
from xai_images._wire._gate import DECODE_BYTES_PER_ITERATION, STARTS_PER_ITERATION, LoopBudget
from xai_images.testing import FakeXAIServer

KEY = "xai-loop-budget-key"


class IterationCounter:
    """Counts event-loop iterations as the loop runs them (an observer for these tests: it
    wraps the running loop's ``_run_once``, one call per iteration, and restores it)."""

    def __init__(self) -> None:
        self.value = 0

    def __enter__(self) -> IterationCounter:
        loop = asyncio.get_running_loop()
        inner = loop._run_once  # type: ignore[attr-defined]

        def run_once() -> None:
            self.value += 1
            inner()

        loop._run_once = run_once  # type: ignore[attr-defined]
        self._loop = loop
        return self

    def __exit__(self, *exc: object) -> None:
        del self._loop._run_once  # type: ignore[attr-defined]  # the class's method again


@pytest.fixture
async def server() -> AsyncIterator[FakeXAIServer]:
    async with FakeXAIServer(api_key=KEY, image_bytes=2048) as s:
        yield s


async def test_at_most_k_api_requests_start_per_loop_iteration(server: FakeXAIServer) -> None:
    """100 generations started at once go out at most STARTS_PER_ITERATION per iteration."""
    server.settings.generation_latency = 0.2  # every start happens before any answer
    with IterationCounter() as counter:
        per_iteration: Counter[int] = Counter()

        def on_event(event: Event) -> None:
            if isinstance(event, RequestSent):
                per_iteration[counter.value] += 1

        async with AsyncClient(KEY, base_url=server.base_url, event_hooks=[on_event]) as client:
            results = await asyncio.gather(*(client.images.generate(f"p{i}") for i in range(100)))
    assert len(results) == 100
    assert sum(per_iteration.values()) == 100
    assert max(per_iteration.values()) == STARTS_PER_ITERATION
    assert len(per_iteration) >= 100 // STARTS_PER_ITERATION


async def test_image_fetches_share_the_start_budget(server: FakeXAIServer, tmp_path: Path) -> None:
    """Downloads started together are admitted at most STARTS_PER_ITERATION per iteration."""
    starts: Counter[int] = Counter()
    counter = IterationCounter()

    async def on_start(_s: object, _ctx: SimpleNamespace, params: object) -> None:
        if getattr(params, "method", "") == "GET":
            starts[counter.value] += 1

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        options = DownloadOptions(concurrency=64)
        async with AsyncClient(
            KEY, base_url=server.base_url, session=session, download=options
        ) as client:
            answers = await asyncio.gather(
                *(client.images.generate(f"p{i}", n=8) for i in range(8))
            )
            with counter:
                saved = await asyncio.gather(*(answer.save(tmp_path) for answer in answers))
    assert sum(len(files) for files in saved) == 64
    assert sum(starts.values()) == 64
    assert max(starts.values()) <= STARTS_PER_ITERATION
    assert len(starts) >= 64 // STARTS_PER_ITERATION


async def test_decode_budget_is_shared_by_concurrent_answers() -> None:
    """Several answers decoding at once spend one budget per iteration and interleave."""
    loop = asyncio.get_running_loop()
    budget = LoopBudget(loop, DECODE_BYTES_PER_ITERATION)
    chunk = 256 * 1024
    fed: list[tuple[int, str]] = []
    with IterationCounter() as counter:

        async def answer(name: str) -> None:
            for _ in range(8):
                await budget.spend(chunk)
                fed.append((counter.value, name))

        await asyncio.gather(*(answer(name) for name in "abcd"))
    per_iteration = Counter(it for it, _ in fed)
    assert len(fed) == 32
    assert max(per_iteration.values()) * chunk <= DECODE_BYTES_PER_ITERATION
    # Interleaved: answer "d" decodes its first chunk before answer "a" its last.
    order = [name for _, name in fed]
    assert order.index("d") < len(order) - 1 - order[::-1].index("a")


async def test_b64_answers_decode_within_the_shared_budget(
    server: FakeXAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """b64_json answers received together are fed at most ~1 MB per loop iteration in all."""
    from xai_images._wire import _transport

    server.settings.image_bytes = 1_500_000
    fed: Counter[int] = Counter()
    counter = IterationCounter()

    class Recording(_transport.B64ResponseScanner):
        def feed(self, chunk: bytes | bytearray | memoryview) -> None:
            fed[counter.value] += len(chunk)
            super().feed(chunk)

    monkeypatch.setattr(_transport, "B64ResponseScanner", Recording)
    async with AsyncClient(KEY, base_url=server.base_url) as client:
        with counter:
            answers = await asyncio.gather(
                *(client.images.generate(f"p{i}", response_format="b64_json") for i in range(6))
            )
    assert all(len(answer.data[0].content or b"") == 1_500_000 for answer in answers)
    assert sum(fed.values()) > 6 * 2_000_000
    # One spend may overshoot the budget by at most one read chunk.
    assert max(fed.values()) <= DECODE_BYTES_PER_ITERATION + 256 * 1024


async def test_a_cancelled_waiter_does_not_block_the_others() -> None:
    """A task cancelled while waiting for the budget leaves the later waiters admitted."""
    budget = LoopBudget(asyncio.get_running_loop(), 1)
    admitted, cancelled, later = (asyncio.ensure_future(budget.spend()) for _ in range(3))
    await admitted  # with a budget of 1, the other two are still waiting
    assert not cancelled.done()
    cancelled.cancel()
    await later
    assert cancelled.cancelled()


async def test_writer_threads_run_once_the_client_opens(server: FakeXAIServer) -> None:
    """Entering the client starts its writer threads, before any save."""
    before = set(threading.enumerate())
    async with AsyncClient(KEY, base_url=server.base_url):
        started = [
            t for t in set(threading.enumerate()) - before if t.name.startswith("xai-images")
        ]
        assert len(started) == 2
