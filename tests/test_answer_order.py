"""Large ``b64_json`` answers arriving together: a few decode at a time and finish in the order
they started (bounded memory), none waits without end, and each answer's pieces keep its place
in the per-iteration decode line."""

from __future__ import annotations

import asyncio

import pytest

from xai_images import AsyncClient
from xai_images._wire import _gate
from xai_images._wire._gate import Backlog, LoopBudget
from xai_images.testing import FakeXAIServer

KEY = "xai-answer-order-key"


async def test_an_answer_starts_only_while_the_answers_in_decode_are_within_the_limit() -> None:
    backlog = Backlog(asyncio.get_running_loop(), 10, max_wait=60.0)
    await backlog.admit(8)
    await backlog.admit(8)  # 8 <= 10 when it asked: admitted, now 16
    third = asyncio.ensure_future(backlog.admit(8))
    fourth = asyncio.ensure_future(backlog.admit(8))
    await asyncio.sleep(0)
    assert not third.done()
    assert not fourth.done()
    backlog.remove(8)  # 8 again: the first in line starts
    await third
    assert not fourth.done()  # 16 > 10 once more
    backlog.remove(8)
    backlog.remove(8)
    await fourth
    assert backlog.bytes == 8


async def test_a_waiting_answer_starts_after_max_wait_at_the_latest() -> None:
    backlog = Backlog(asyncio.get_running_loop(), 0, max_wait=0.01)
    await backlog.admit(5)
    await backlog.admit(5)  # nothing removed: it starts when its wait runs out
    assert backlog.bytes == 10


async def test_an_answer_whose_wait_ran_out_leaves_the_line() -> None:
    backlog = Backlog(asyncio.get_running_loop(), 0, max_wait=0.01)
    await backlog.admit(1)
    await backlog.admit(1)  # waits until its time runs out
    backlog.remove(1)
    backlog.remove(1)
    later = asyncio.ensure_future(backlog.admit(1))
    await asyncio.sleep(0)
    assert later.done()  # nothing in decode: it starts at once, behind no one


async def test_a_cancelled_waiter_passes_its_turn_on() -> None:
    backlog = Backlog(asyncio.get_running_loop(), 0, max_wait=60.0)
    await backlog.admit(1)
    cancelled = asyncio.ensure_future(backlog.admit(1))
    later = asyncio.ensure_future(backlog.admit(1))
    await asyncio.sleep(0)
    cancelled.cancel()
    backlog.remove(1)
    await later
    assert cancelled.cancelled()


async def test_spends_with_an_earlier_ticket_go_first() -> None:
    budget = LoopBudget(asyncio.get_running_loop(), 1)
    first = budget.ticket()
    order: list[str] = []

    async def spend(name: str, ticket: int | None) -> None:
        await budget.spend(1, ticket)
        order.append(name)

    await asyncio.gather(spend("new", None), spend("newer", None), spend("old", first))
    assert order == ["old", "new", "newer"]


async def test_large_answers_arriving_together_decode_one_after_another(
    server: FakeXAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With room for one answer, six 2 MB answers decode one at a time, and all arrive whole."""
    from xai_images._wire import _transport

    monkeypatch.setattr(_gate, "ANSWER_BYTES_DECODING", 1)  # this test's loop builds its budgets
    server.settings.image_bytes = 1_500_000
    open_scanners = 0
    most = 0

    class Recording(_transport.B64ResponseScanner):
        started = False

        def feed(self, chunk: bytes | bytearray | memoryview) -> None:
            nonlocal open_scanners, most
            if not self.started:
                self.started = True
                open_scanners += 1
                most = max(most, open_scanners)
            super().feed(chunk)

        def close(self) -> tuple[bytes, list[bytes]]:
            nonlocal open_scanners
            open_scanners -= 1
            return super().close()

    monkeypatch.setattr(_transport, "B64ResponseScanner", Recording)
    async with AsyncClient(KEY, base_url=server.base_url) as client:
        answers = await asyncio.gather(
            *(client.images.generate(f"p{i}", response_format="b64_json") for i in range(6))
        )
    assert all(len(answer.data[0].content or b"") == 1_500_000 for answer in answers)
    assert most == 1
