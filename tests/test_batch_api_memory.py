"""Memory of a Batch API job: items waiting in the batch are kept off the heap (issue 17,
item 8), and come back whole when their results arrive."""

from __future__ import annotations

import gc
import random
import threading
from pathlib import Path
from typing import Any

import pytest

from xai_images import AsyncClient, GenerateRequest
from xai_images._api._requests import Request
from xai_images._bulk._jobstate import KeyTable
from xai_images._bulk._tally import Item
from xai_images.bulk import BatchLimits, ProgressEvent, RemoteBatchRun
from xai_images.testing import FakeClock, FakeXAIServer


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake_xai_server_options(clock: FakeClock) -> dict[str, Any]:
    return {"image_bytes": 256, "clock": clock, "batch_create_limit": None}


@pytest.fixture
async def client(server: FakeXAIServer) -> Any:
    async with AsyncClient(api_key=server.api_key, base_url=server.base_url) as c:
        c.batches.limits = BatchLimits(creates_per_second=1000, max_requests_per_call=4)
        yield c


def prompts(count: int) -> list[GenerateRequest]:
    return [
        GenerateRequest(f"a heron number {i}", id=f"heron-{i}", line=i + 1) for i in range(count)
    ]


def remote(client: AsyncClient, jobs: Any, out: Path, **kwargs: Any) -> RemoteBatchRun:
    return RemoteBatchRun(client, jobs, output_dir=out, poll_interval=0.01, **kwargs)


def hidden_files(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.name.startswith(".")]


def live_items() -> list[Item]:
    return [o for o in gc.get_objects() if isinstance(o, Item)]


async def test_items_waiting_for_results_are_not_kept_in_memory(
    client: AsyncClient, server: FakeXAIServer, clock: FakeClock, tmp_path: Path
) -> None:
    """Once every item is in the batch and no result is there yet, no `Item` is alive; the
    results then save every item with its request as read (line number included), and the
    spill file leaves nothing behind."""
    server.settings.batch_processing_seconds = 100
    count = 30
    alive_while_waiting: list[int] = []

    def on_poll(progress: Any) -> None:
        if progress.started == count and not alive_while_waiting:
            alive_while_waiting.append(len(live_items()))
            clock.advance(1000)  # the results arrive

    run = remote(client, prompts(count), tmp_path, on_poll=on_poll)
    outcomes = await run.collect()
    assert alive_while_waiting == [0]
    assert sorted(o.id for o in outcomes if o.ok) == sorted(f"heron-{i}" for i in range(count))
    assert {o.id: o.request for o in outcomes} == {r.id: r for r in prompts(count)}
    assert {o.id: o.line for o in outcomes} == {f"heron-{i}": i + 1 for i in range(count)}
    assert server.ledger.batch_requests_added == count
    assert hidden_files(tmp_path) == []


class HeldSpend:
    """A `Spend` whose reservations are opaque objects, picklable or not."""

    def __init__(self, *, picklable: bool) -> None:
        self.picklable = picklable
        self.reserved: dict[str, object] = {}
        self.settled: list[tuple[object, int | None]] = []
        self.released: list[object] = []

    async def reserve(self, request: Request, *, item_id: str) -> object:
        token: object = item_id if self.picklable else (item_id, threading.Lock())
        self.reserved[item_id] = token
        return token

    async def settle(self, reservation: object, cost_in_usd_ticks: int | None) -> None:
        self.settled.append((reservation, cost_in_usd_ticks))

    async def release(self, reservation: object) -> None:
        self.released.append(reservation)


@pytest.mark.parametrize("picklable", [True, False])
async def test_reservations_come_back_from_the_batch_unchanged(
    client: AsyncClient, server: FakeXAIServer, clock: FakeClock, tmp_path: Path, picklable: bool
) -> None:
    """A detached run settles each added item's reservation as maybe billed (``None``); the
    run that collects them later reserves nothing for them; a collected item settles with its
    cost. Reservations are handed back as the seam gave them (the same object when it cannot
    be written to the spill file)."""
    server.settings.batch_processing_seconds = 100
    spend = HeldSpend(picklable=picklable)
    await remote(client, prompts(5), tmp_path, detach=True, spend=spend).collect()
    assert len(spend.reserved) == 5
    assert sorted(map(repr, (r for r, _ in spend.settled))) == sorted(
        map(repr, spend.reserved.values())
    )
    assert all(cost is None for _, cost in spend.settled)
    if not picklable:
        assert {id(r) for r, _ in spend.settled} == {id(r) for r in spend.reserved.values()}
    clock.advance(1000)
    server.settings.batch_processing_seconds = 0
    spend = HeldSpend(picklable=picklable)
    outcomes = await remote(client, prompts(6), tmp_path, spend=spend).collect()
    assert all(o.ok for o in outcomes)
    assert list(spend.reserved) == ["heron-5"]  # only the new item is paid in this run
    [(reservation, cost)] = spend.settled
    assert reservation is spend.reserved["heron-5"] or reservation == "heron-5"
    assert cost is not None
    assert spend.released == []


async def test_ids_sharing_a_hash_are_told_apart_in_the_batch(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Items whose ids hash alike while they wait are each saved with their own request."""
    monkeypatch.setattr("xai_images._bulk._inbatch._key", lambda _id: 42)
    events: list[ProgressEvent] = []
    outcomes = await remote(client, prompts(9), tmp_path, on_event=events.append).collect()
    assert {o.id: o.request for o in outcomes if o.ok} == {r.id: r for r in prompts(9)}
    assert sorted(e.item_id for e in events if e.kind == "saved") == sorted(
        f"heron-{i}" for i in range(9)
    )


def test_the_hash_table_removes_and_finds_like_a_dict() -> None:
    """Random puts and removals (clustered keys included) leave the table equal to a dict."""
    rng = random.Random(17)
    table, reference = KeyTable(), {}
    for _ in range(20_000):
        key = rng.choice(
            [rng.getrandbits(64) or 1, rng.randrange(1, 300), (5 << 56) + rng.randrange(1, 40)]
        )
        if reference and rng.random() < 0.45:
            key = rng.choice(list(reference)) if rng.random() < 0.9 else key
            table.pop(key)
            reference.pop(key, None)
        else:
            value = rng.randrange(-(2**40), 2**40)
            table.put(key, value)
            reference[key] = value
    assert len(table) == len(reference)
    assert all(table.get(k) == v for k, v in reference.items())
    assert sorted(v for values in table.values() for v in values) == sorted(reference.values())
    assert table.get(299_999) is None
