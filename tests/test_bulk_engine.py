"""The one bulk engine: stopping stops spending, the spending seam, one resume rule."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from xai_images import AsyncClient, GenerateRequest, OutcomeUnknownError
from xai_images._api._requests import Request
from xai_images._bulk._jobstate import IdSet, KeyTable, load_job_state
from xai_images._bulk._source_batchapi import RemoteBatchRun
from xai_images._bulk._source_realtime import BatchRun
from xai_images._bulk._spend import SpendRefused
from xai_images._hooks import Event, RequestSent
from xai_images.bulk import BatchLimits, ManifestRecord, Outcome, ProgressEvent, load_manifest
from xai_images.testing import FakeXAIServer, Reply

pytestmark = pytest.mark.usefixtures("xai_instant_retries")


@pytest.fixture
def fake_xai_server_options() -> dict[str, Any]:
    """Small images keep the runs quick; batches may be created back to back."""
    return {"image_bytes": 256, "batch_create_limit": None}


def prompts(count: int) -> list[GenerateRequest]:
    return [GenerateRequest(f"a fox number {i}", id=f"fox-{i}") for i in range(count)]


def generate_posts(server: FakeXAIServer) -> int:
    return sum(
        1
        for r in server.ledger.api_requests()
        if r.method == "POST" and r.path == "/v1/images/generations"
    )


class CountingSpend:
    """A `Spend` that allows ``allow`` reservations, then refuses; records every call."""

    def __init__(self, allow: int) -> None:
        self.allow = allow
        self.reserved: list[str] = []
        self.settled: list[tuple[str, int | None]] = []
        self.released: list[str] = []

    async def reserve(self, request: Request, *, item_id: str) -> object:
        if len(self.reserved) >= self.allow:
            raise SpendRefused("the test budget is reached")
        self.reserved.append(item_id)
        return item_id

    async def settle(self, reservation: object, cost_in_usd_ticks: int | None) -> None:
        self.settled.append((str(reservation), cost_in_usd_ticks))

    async def release(self, reservation: object) -> None:
        self.released.append(str(reservation))


async def test_stop_sends_no_request_that_was_not_sent_already(
    server: FakeXAIServer, tmp_path: Path
) -> None:
    """After stop(), items waiting for the rate limiter are not sent and not recorded; a rerun
    sends exactly them."""
    sent: list[Event] = []
    at_stop: list[int] = []
    async with AsyncClient(
        api_key=server.api_key, base_url=server.base_url, rate_limit=1.0
    ) as client:
        client.add_event_hook(lambda e: sent.append(e) if isinstance(e, RequestSent) else None)

        def on_event(event: ProgressEvent) -> None:
            if event.kind == "saved" and not at_stop:
                at_stop.append(len(sent))
                run.stop()

        run = BatchRun(client, prompts(8), output_dir=tmp_path, concurrency=8, on_event=on_event)
        first = await run.collect()
    assert at_stop
    assert at_stop[0] < 8
    assert generate_posts(server) == at_stop[0] == len(first)
    assert all(o.ok for o in first)
    assert len(load_manifest(tmp_path / "manifest.jsonl")) == len(first)
    assert run.progress.in_flight == 0
    async with AsyncClient(api_key=server.api_key, base_url=server.base_url) as client:
        second = await BatchRun(client, prompts(8), output_dir=tmp_path).collect()
    assert sum(not o.skipped for o in second) == 8 - len(first)
    assert all(o.ok for o in second)
    assert generate_posts(server) == 8  # each item paid once


async def test_the_spend_seam_refusing_ends_the_run_resumably(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """A refused reservation sends nothing more, records nothing for the rest, and says so."""
    spend = CountingSpend(allow=3)
    outcomes = await BatchRun(
        client, prompts(6), output_dir=tmp_path, concurrency=1, spend=spend
    ).collect()
    assert generate_posts(server) == 3
    assert [o.ok for o in outcomes] == [True] * 3
    assert sorted(s[0] for s in spend.settled) == sorted(spend.reserved)
    assert all(ticks for _, ticks in spend.settled)  # the answers' usage
    assert spend.released == []
    again = BatchRun(client, prompts(6), output_dir=tmp_path, spend=CountingSpend(allow=10))
    rest = await again.collect()
    assert sum(not o.skipped for o in rest) == 3
    assert generate_posts(server) == 6


async def test_a_budget_run_reports_budget_reached(client: AsyncClient, tmp_path: Path) -> None:
    """``budget_reached`` is set when the seam refused, not otherwise."""
    run = BatchRun(client, prompts(2), output_dir=tmp_path, spend=CountingSpend(allow=1))
    await run.collect()
    assert run.progress.budget_reached
    assert not run.progress.interrupted  # reaching the budget is no interruption
    run = BatchRun(client, prompts(2), output_dir=tmp_path / "b", spend=CountingSpend(allow=9))
    await run.collect()
    assert not run.progress.budget_reached


async def test_the_batch_api_source_adds_only_what_the_seam_allows(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """Through the Batch API a refused reservation adds nothing more; the rest waits."""
    client.batches.limits = BatchLimits(creates_per_second=1000, max_requests_per_call=2)
    spend = CountingSpend(allow=3)
    run = RemoteBatchRun(client, prompts(6), output_dir=tmp_path, poll_interval=0.01, spend=spend)
    outcomes = await run.collect()
    assert server.ledger.batch_requests_added == 3
    assert run.progress.budget_reached
    assert run.not_submitted == []  # left out by the budget, not waiting for a batch
    assert sorted(o.id for o in outcomes if o.ok) == ["fox-0", "fox-1", "fox-2"]
    assert sorted(s[0] for s in spend.settled) == ["fox-0", "fox-1", "fox-2"]


async def test_stopping_a_batch_api_run_adds_nothing_more(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """stop() during the adds: calls not made stay unmade; a rerun adds exactly the rest."""
    client.batches.limits = BatchLimits(creates_per_second=1000, max_requests_per_call=2)

    def on_event(event: ProgressEvent) -> None:
        if event.kind == "started":
            run.stop()

    run = RemoteBatchRun(
        client, prompts(6), output_dir=tmp_path, poll_interval=0.01, on_event=on_event
    )
    await run.collect()
    assert server.ledger.batch_requests_added == 2
    assert len(run.not_submitted) == 4
    rest = await RemoteBatchRun(
        client, prompts(6), output_dir=tmp_path, poll_interval=0.01
    ).collect()
    assert sorted(o.id for o in rest if o.ok) == [f"fox-{i}" for i in range(6)]
    assert max(server.ledger.batch_request_adds.values()) == 1  # nothing added twice


@pytest.mark.parametrize("source", [BatchRun, RemoteBatchRun])
async def test_one_resume_rule_a_skipped_unknown_item_is_outcome_unknown(
    client: AsyncClient, tmp_path: Path, source: Any
) -> None:
    """Both sources skip an item recorded ``unknown`` with an `OutcomeUnknownError`."""
    request = prompts(1)[0]
    record = ManifestRecord("fox-0", "generate", request.to_json(), "unknown", error="lost")
    (tmp_path / "manifest.jsonl").write_text(json.dumps(record.to_json()) + "\n")
    outcomes: list[Outcome] = await source(client, [request], output_dir=tmp_path).collect()
    assert [(o.status, o.skipped) for o in outcomes] == [("unknown", True)]
    assert isinstance(outcomes[0].error, OutcomeUnknownError)


def test_the_manifest_index_keeps_the_latest_record_of_each_id(tmp_path: Path) -> None:
    """The compact index finds each id's last record and tells ids apart."""
    path = tmp_path / "manifest.jsonl"
    lines = []
    for i in range(50):
        lines.append(ManifestRecord(f"id-{i}", "generate", {"prompt": "p"}, "failed").to_json())
    lines.append(ManifestRecord("id-7", "generate", {"prompt": "p"}, "ok").to_json())
    lines.append({"record": "run", "run_id": "r1"})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"id": "torn')
    state = load_job_state(path)
    try:
        assert len(state) == 50
        found = state.record("id-7")
        assert found is not None
        assert found[1].status == "ok"
        assert state.record("id-8") is not None
        assert state.record("id-50") is None
        assert [r.run_id for r in state.runs] == ["r1"]
    finally:
        state.close()
    ids = IdSet(f"id-{i}" for i in range(1000))
    assert "id-999" in ids
    assert "id-1000" not in ids
    assert len(ids) == 1000


async def test_a_job_file_is_read_lazily(client: AsyncClient, tmp_path: Path) -> None:
    """A job file is read as the run goes: stopping early leaves the rest unread and unrun."""
    job = tmp_path / "jobs.jsonl"
    job.write_text("".join(json.dumps({"prompt": f"p{i}"}) + "\n" for i in range(2000)))

    def on_event(event: ProgressEvent) -> None:
        if event.kind == "queued":
            run.stop()

    run = BatchRun(client, job, output_dir=tmp_path / "out", on_event=on_event)
    await run.collect()
    assert run.progress.total < 2000


async def test_the_spend_seam_releases_what_provably_did_not_run(
    server: FakeXAIServer, tmp_path: Path
) -> None:
    """A request refused with an error status is released; a lost answer is settled unpriced."""
    server.enqueue(Reply.error(400), Reply.drop())
    spend = CountingSpend(allow=10)
    async with AsyncClient(
        api_key=server.api_key, base_url=server.base_url, max_retries=0
    ) as client:
        outcomes = await BatchRun(
            client, prompts(2), output_dir=tmp_path, concurrency=1, spend=spend
        ).collect()
    assert sorted(o.status for o in outcomes) == ["failed", "unknown"]
    assert spend.released == ["fox-0"]
    assert spend.settled == [("fox-1", None)]


def test_the_manifest_index_tells_apart_ids_whose_hashes_collide(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ids sharing a hash are kept by their full id: each finds its own record."""
    monkeypatch.setattr("xai_images._bulk._jobstate._key", lambda _id: 42)
    path = tmp_path / "manifest.jsonl"
    records = [ManifestRecord(f"id-{i}", "generate", {"prompt": f"p{i}"}, "ok") for i in range(5)]
    path.write_text("".join(json.dumps(r.to_json()) + "\n" for r in records))
    state = load_job_state(path)
    try:
        for i in range(5):
            found = state.record(f"id-{i}")
            assert found is not None
            assert found[1].request == {"prompt": f"p{i}"}
        assert state.record("id-9") is None
    finally:
        state.close()


@pytest.mark.parametrize("via", ["realtime", "batch-api"])
async def test_resume_reads_the_manifest_off_the_event_loop(
    client: AsyncClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, via: str
) -> None:
    """A resumed run looks up earlier records (one manifest line each) and checks their files
    in a worker thread, never on the event loop's thread."""
    import threading

    from xai_images._bulk._jobstate import JobState
    from xai_images._bulk._manifest import ManifestRecord as Record

    client.batches.limits = BatchLimits(creates_per_second=1000, max_requests_per_call=3)
    first = await client.bulk(prompts(300), output_dir=tmp_path, via=via).collect()
    assert all(o.ok for o in first)
    threads: list[threading.Thread] = []
    record, intact = JobState.record, Record.files_intact

    def spy_record(self: JobState, item_id: str) -> Any:
        threads.append(threading.current_thread())
        return record(self, item_id)

    def spy_intact(self: Record, *args: Any, **kwargs: Any) -> bool:
        threads.append(threading.current_thread())
        return intact(self, *args, **kwargs)

    monkeypatch.setattr(JobState, "record", spy_record)
    monkeypatch.setattr(Record, "files_intact", spy_intact)
    again = await client.bulk(prompts(300), output_dir=tmp_path, via=via).collect()
    assert len(again) == 300
    assert all(o.skipped for o in again)
    assert len(threads) == 600
    assert threading.main_thread() not in threads


async def test_the_earlier_spend_is_counted_off_the_event_loop(
    client: AsyncClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``max_cost`` the spend of earlier runs is read from the manifest in a thread."""
    import threading

    from xai_images._bulk import _budget

    await client.bulk(prompts(3), output_dir=tmp_path).collect()
    threads: list[threading.Thread] = []
    spent_in = _budget.spent_in

    def spy(records: Any, table: Any) -> int:
        threads.append(threading.current_thread())
        return spent_in(records, table)

    monkeypatch.setattr(_budget, "spent_in", spy)
    run = client.bulk(prompts(4), output_dir=tmp_path, max_cost="1")
    await run.collect()
    assert threads
    assert threading.main_thread() not in threads
    assert run.progress.spent_in_usd_ticks == 4 * 200_000_000


def test_the_engine_reaches_transfers_through_the_requester_seam(
    client: AsyncClient, tmp_path: Path
) -> None:
    """The engine's `Transfers` are the client's request path's (`requester_of`), the ones its
    resources use; anything that is not a client is refused."""
    from xai_images._api._client import requester_of

    run = BatchRun(client, prompts(1), output_dir=tmp_path)
    assert run._transfers is requester_of(client).transfers
    with pytest.raises(TypeError, match="not an xai_images client"):
        requester_of(object())


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
