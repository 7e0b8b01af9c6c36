"""Bulk jobs through the Batch API (client.bulk(via="batch-api") and the CLI) against the fake."""

from __future__ import annotations

import asyncio
import gc
import json
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from xai_images import (
    AsyncClient,
    BatchRequestError,
    Client,
    DownloadOptions,
    GenerateRequest,
    RetryPolicy,
    ValidationError,
)
from xai_images._bulk._tally import Item
from xai_images._ui._cli import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, main
from xai_images.bulk import (
    BatchAPI,
    BatchLimits,
    Outcome,
    ProgressEvent,
    RemoteBatchRun,
    load_manifest,
)
from xai_images.testing import FakeClock, FakeXAIServer, Reply


class Crash(Exception):
    """Stands in for the process dying at one point of a run."""


pytestmark = pytest.mark.usefixtures("xai_instant_retries")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake_xai_server_options(clock: FakeClock) -> dict[str, Any]:
    """Small images, the test's clock, and no limit on batch creation."""
    return {"image_bytes": 512, "clock": clock, "batch_create_limit": None}


def make_client(server: FakeXAIServer) -> AsyncClient:
    client = AsyncClient(
        api_key=server.api_key,
        base_url=server.base_url,
        download=DownloadOptions(retry=RetryPolicy(max_attempts=1)),
    )
    client.batches.limits = BatchLimits(creates_per_second=1000, max_requests_per_call=3)
    return client


@pytest.fixture
async def client(server: FakeXAIServer) -> AsyncIterator[AsyncClient]:
    async with make_client(server) as c:
        yield c


def prompts(count: int) -> list[GenerateRequest]:
    return [GenerateRequest(f"a fox number {i}", id=f"fox-{i}") for i in range(count)]


def remote(client: AsyncClient, requests: Any, out: Path, **kwargs: Any) -> RemoteBatchRun:
    kwargs.setdefault("poll_interval", 0.01)
    kwargs.setdefault("max_poll_interval", 0.05)
    return RemoteBatchRun(client, requests, output_dir=out, **kwargs)


def by_id(outcomes: list[Outcome]) -> dict[str, Outcome]:
    return {o.id: o for o in outcomes}


def run_records(out: Path) -> list[dict[str, Any]]:
    lines = (out / "manifest.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "record" in r]


def image_files(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.suffix == ".png")


def assert_clean_single_batch(server: FakeXAIServer, out: Path, count: int) -> None:
    ledger = server.ledger
    assert ledger.batches_created == 1
    assert set(ledger.batch_request_adds.values()) == {1}
    assert len(ledger.batch_request_adds) == count
    assert image_files(out) == sorted(f"fox-{i}-0.png" for i in range(count))
    assert not list(out.rglob("*.part"))
    assert ledger.downloads_with_auth == 0


async def test_every_image_is_saved_through_one_batch(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """client.bulk(via="batch-api") saves each image, adds each id once, records the run."""
    outcomes = await client.bulk(prompts(7), output_dir=tmp_path, via="batch-api").collect()
    assert all(o.ok for o in outcomes)
    assert len(outcomes) == 7
    assert_clean_single_batch(server, tmp_path, 7)
    kinds = [r["record"] for r in run_records(tmp_path)]
    assert kinds[:2] == ["run", "batch"]
    assert kinds.count("adding") == kinds.count("added") == 3
    assert kinds[-1] == "closed"
    manifest = load_manifest(tmp_path / "manifest.jsonl")
    assert manifest["fox-3"].cost_in_usd_ticks == 200_000_000
    assert manifest["fox-3"].files[0].sha256


async def test_batch_api_options_detach_then_collect(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """via=BatchAPI(detach=True) submits and ends; the same job with via="batch-api" collects."""
    detached = client.bulk(prompts(2), output_dir=tmp_path, via=BatchAPI(detach=True))
    assert await detached.collect() == []
    assert server.ledger.batch_requests_added == 2
    outcomes = await client.bulk(prompts(2), output_dir=tmp_path, via="batch-api").collect()
    assert all(o.ok for o in outcomes)
    assert_clean_single_batch(server, tmp_path, 2)


def test_an_unknown_via_is_refused(client: AsyncClient, tmp_path: Path) -> None:
    """via must be "realtime", "batch-api" or a BatchAPI."""
    with pytest.raises(ValidationError, match="via"):
        client.bulk(prompts(1), output_dir=tmp_path, via="carrier-pigeon")  # type: ignore[arg-type]


async def test_the_same_job_again_skips_everything(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """A finished job run again creates no batch and adds nothing."""
    await remote(client, prompts(4), tmp_path).collect()
    again = await remote(client, prompts(4), tmp_path).collect()
    assert all(o.skipped and o.ok for o in again)
    assert server.ledger.batches_created == 1


async def test_invalid_items_are_failed_before_anything_is_created(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """Bad items become failed outcomes and nothing reaches the Batch API when none is valid."""
    jobs = [{"prompt": ""}, {"prompt": "x", "n": 99}, {"prompt": "x", "bogus": 1}]
    outcomes = await remote(client, jobs, tmp_path).collect()
    assert [o.status for o in outcomes] == ["failed"] * 3
    assert server.ledger.batches_created == 0


async def test_oversized_item_is_refused_locally_naming_it(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """An item over the per-request size fails locally; the others run."""
    client.batches.limits = BatchLimits(max_request_bytes=300, creates_per_second=1000)
    jobs = [*prompts(2), GenerateRequest("y" * 400, id="huge")]
    outcomes = by_id(await remote(client, jobs, tmp_path).collect())
    assert outcomes["huge"].status == "failed"
    assert "huge" in str(outcomes["huge"].error)
    assert outcomes["fox-0"].ok
    assert "huge" not in server.ledger.batch_request_adds


async def test_refused_item_fails_alone_with_the_server_message(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """An add refused for one item (unsupported model) fails only that item."""
    server.settings.batch_unsupported_models = ("grok-old",)
    jobs = [*prompts(2), GenerateRequest("z", id="old", model="grok-old")]
    outcomes = by_id(await remote(client, jobs, tmp_path).collect())
    assert outcomes["old"].status == "failed"
    assert "not supported for batch processing" in str(outcomes["old"].error)
    assert outcomes["fox-0"].ok
    assert outcomes["fox-1"].ok


@pytest.mark.parametrize("shape", ["status", "string", "vercel", "top_level"])
async def test_request_errors_become_failed_with_code_and_message(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path, shape: str
) -> None:
    """A per-request error in any shape is a failed outcome with the server's message."""
    server.settings.batch_error_shape = shape
    server.settings.batch_failure_rate = 1.0
    (outcome,) = await remote(client, prompts(1), tmp_path).collect()
    assert outcome.status == "failed"
    assert isinstance(outcome.error, BatchRequestError)
    assert outcome.error.server_message == "Image generation failed: internal error."
    assert outcome.error.code == (13 if shape in ("status", "vercel") else None)
    assert load_manifest(tmp_path / "manifest.jsonl")["fox-0"].status == "failed"


async def test_moderated_request_is_blocked(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """A moderated result is blocked (and billed)."""
    server.settings.batch_moderation_rate = 1.0
    (outcome,) = await remote(client, prompts(1), tmp_path).collect()
    assert outcome.status == "blocked"
    assert outcome.record is not None
    assert outcome.record.billed


async def test_urls_that_expired_before_saving_are_expired_and_not_regenerated(
    client: AsyncClient, server: FakeXAIServer, clock: FakeClock, tmp_path: Path
) -> None:
    """Results collected after their URLs expired are expired (billed); a rerun skips them."""
    detached = remote(client, prompts(2), tmp_path, detach=True)
    assert await detached.collect() == []
    clock.advance(3601)
    outcomes = await remote(client, prompts(2), tmp_path).collect()
    assert [o.status for o in outcomes] == ["expired", "expired"]
    assert all(o.record is not None and o.record.billed for o in outcomes)
    again = await remote(client, prompts(2), tmp_path).collect()
    assert all(o.skipped and o.status == "expired" for o in again)
    assert server.ledger.batches_created == 1


async def test_failed_download_is_fetched_again_on_retry_without_regenerating(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """A billed item whose download failed is downloaded again with retry_failed, not re-run."""
    server.enqueue_download(Reply.error(500))
    (first,) = await remote(client, prompts(1), tmp_path).collect()
    assert first.status == "failed"
    assert first.record is not None
    assert first.record.billed
    (again,) = await remote(client, prompts(1), tmp_path, retry_failed=True).collect()
    assert again.ok
    assert server.ledger.batches_created == 1
    assert server.ledger.batch_images_billed == 1
    assert image_files(tmp_path) == ["fox-0-0.png"]


async def test_retry_failed_runs_server_failures_in_a_new_batch(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """Items that failed at the server run again, with retry_failed, in a second batch."""
    server.settings.batch_failure_rate = 1.0
    (first,) = await remote(client, prompts(1), tmp_path).collect()
    assert first.status == "failed"
    server.settings.batch_failure_rate = 0.0
    skipped = await remote(client, prompts(1), tmp_path).collect()
    assert skipped[0].skipped
    (again,) = await remote(client, prompts(1), tmp_path, retry_failed=True).collect()
    assert again.ok
    assert server.ledger.batches_created == 2


async def test_an_expired_batch_expires_its_unsaved_items(
    client: AsyncClient, clock: FakeClock, tmp_path: Path
) -> None:
    """Once the batch itself expired, its unsaved items end expired."""
    await remote(client, prompts(2), tmp_path, detach=True).collect()
    clock.advance(2 * 86400)
    outcomes = await remote(client, prompts(2), tmp_path).collect()
    assert [o.status for o in outcomes] == ["expired", "expired"]


async def test_batch_cancelled_by_xai_is_reported_with_its_message(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """When xAI cancels the batch, pending items fail with xAI's message."""
    server.settings.batch_processing_seconds = 3600
    run = remote(client, prompts(2), tmp_path, detach=True)
    await run.collect()
    message = "Model grok-x is not supported for batch processing."
    store = server._batches.store  # xAI cancelling a batch has no route: the fake's store does it
    store.cancel(store.batches[str(run.batch_id)], message=message)
    again = remote(client, prompts(2), tmp_path)
    outcomes = await again.collect()
    assert again.cancelled_by_xai == message
    assert all(o.status == "failed" and message in str(o.error) for o in outcomes)


async def test_new_items_go_to_a_new_batch_when_the_recorded_one_was_cancelled(
    client: AsyncClient, server: FakeXAIServer, clock: FakeClock, tmp_path: Path
) -> None:
    """A batch cancelled elsewhere takes no new items: they run in a second batch."""
    server.settings.batch_processing_seconds = 3600
    first = remote(client, prompts(2), tmp_path, detach=True)
    await first.collect()
    await client.batches.cancel(str(first.batch_id))
    server.settings.batch_processing_seconds = 0
    outcomes = by_id(await remote(client, prompts(3), tmp_path).collect())
    assert outcomes["fox-0"].status == "failed"
    assert "cancelled" in str(outcomes["fox-0"].error)
    assert outcomes["fox-2"].ok
    assert server.ledger.batches_created == 2
    assert set(server.ledger.batch_request_adds.values()) == {1}


async def test_a_batch_the_api_no_longer_knows_expires_its_items(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """A recorded batch answering 404 ends its items expired; new items get a new batch."""
    records = [
        {"record": "run", "run_id": "old-run"},
        {"record": "batch", "run_id": "old-run", "batch_id": "batch_gone"},
        {"record": "added", "batch_id": "batch_gone", "ids": ["fox-0"]},
    ]
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    outcomes = by_id(await remote(client, prompts(2), tmp_path).collect())
    assert outcomes["fox-0"].status == "expired"
    assert outcomes["fox-1"].ok
    assert server.ledger.batches_created == 1
    assert "fox-0" not in server.ledger.batch_request_adds


async def test_lost_add_answer_is_reconciled_in_a_job(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """A dropped add answer is settled by listing; every image is still saved once."""
    server.enqueue_batch(Reply.drop(), route="add")
    outcomes = await remote(client, prompts(5), tmp_path).collect()
    assert all(o.ok for o in outcomes)
    assert_clean_single_batch(server, tmp_path, 5)


async def test_a_429_on_add_is_retried_and_counted(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """An add answered 429 is sent again after the wait; the run counts the 429."""
    server.enqueue_batch(Reply.error(429, retry_after=0), route="add")
    run = remote(client, prompts(2), tmp_path)
    outcomes = await run.collect()
    assert all(o.ok for o in outcomes)
    assert run.progress.rate_limited == 1
    assert_clean_single_batch(server, tmp_path, 2)


def crash_before(obj: Any, name: str, nth: int = 1) -> None:
    original = getattr(obj, name)
    calls = 0

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == nth:
            raise Crash(name)
        return await original(*args, **kwargs)

    setattr(obj, name, wrapper)


def crash_after(obj: Any, name: str, nth: int = 1) -> None:
    original = getattr(obj, name)
    calls = 0

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        result = await original(*args, **kwargs)
        if calls == nth:
            raise Crash(name)
        return result

    setattr(obj, name, wrapper)


STEPS: dict[str, Callable[[AsyncClient], None]] = {
    "before-create": lambda c: crash_before(c.batches, "create"),
    "after-create": lambda c: crash_after(c.batches, "create"),
    "before-first-add": lambda c: crash_before(c.batches, "add_call"),
    "after-first-add": lambda c: crash_after(c.batches, "add_call"),
    "after-second-add": lambda c: crash_after(c.batches, "add_call", 2),
    "after-last-add": lambda c: crash_after(c.batches, "add_call", 3),
    "at-first-results": lambda c: crash_before(c.batches, "results"),
    "after-first-results": lambda c: crash_after(c.batches, "results"),
}


@pytest.mark.parametrize("step", list(STEPS))
async def test_crash_at_any_step_resumes_with_one_batch_and_no_duplicate_add(
    server: FakeXAIServer, tmp_path: Path, step: str
) -> None:
    """Dying between any two remote steps, then resuming, gives one batch and one add per id."""
    async with make_client(server) as first:
        STEPS[step](first)
        with pytest.raises(Crash):
            await remote(first, prompts(7), tmp_path).collect()
    async with make_client(server) as second:
        outcomes = await remote(second, prompts(7), tmp_path).collect()
    settled = {o.id for o in outcomes if o.ok}
    assert settled == {f"fox-{i}" for i in range(7)}
    assert_clean_single_batch(server, tmp_path, 7)


async def test_cancelled_while_saving_resumes_without_duplicates(
    server: FakeXAIServer, tmp_path: Path
) -> None:
    """Leaving the loop after the first saved item, then resuming, saves each image once."""
    async with (
        make_client(server) as first,
        remote(first, prompts(7), tmp_path, concurrency=1) as run,
    ):
        async for _outcome in run:
            break
    async with make_client(server) as second:
        outcomes = await remote(second, prompts(7), tmp_path).collect()
    assert all(o.ok for o in outcomes)
    assert_clean_single_batch(server, tmp_path, 7)


async def test_stop_leaves_the_remote_batch_running(
    client: AsyncClient, server: FakeXAIServer, clock: FakeClock, tmp_path: Path
) -> None:
    """stop() ends the run without cancelling the batch; a new run collects the rest."""
    server.settings.batch_processing_seconds = 100
    # Stopped once every request is in the batch (a stop before an add call means that call
    # is not made: stopping stops spending).

    def stop_when_all_added(event: ProgressEvent) -> None:
        if event.progress.started == 4:
            run.stop()

    run = remote(client, prompts(4), tmp_path, on_event=stop_when_all_added)
    assert await run.collect() == []
    assert run.batch_id is not None
    assert not (await client.batches.get(run.batch_id)).cancelled
    clock.advance(200)
    outcomes = await remote(client, prompts(4), tmp_path).collect()
    assert all(o.ok for o in outcomes)
    assert_clean_single_batch(server, tmp_path, 4)


async def test_progress_counts_server_state_and_save_delays(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """The run's progress has the server's counters, images, cost and the save delays."""
    polls: list[int] = []
    run = remote(client, prompts(3), tmp_path, on_poll=lambda p: polls.append(p.server_pending))
    await run.collect()
    p = run.progress
    assert polls
    assert p.server_succeeded == 3
    assert p.images == 3
    assert p.cost_in_usd_ticks == 600_000_000
    margin = p.margin()
    assert margin is not None
    assert len(p.result_waits) == 3


async def test_the_sync_client_runs_a_batch_api_job(server: FakeXAIServer, tmp_path: Path) -> None:
    """xai_images.Client.bulk(..., via="batch-api") saves every image too."""

    def run_sync() -> list[Outcome]:
        with Client(api_key=server.api_key, base_url=server.base_url) as sync_client:
            return sync_client.bulk(prompts(3), output_dir=tmp_path, via="batch-api").collect()

    outcomes = await asyncio.to_thread(run_sync)
    assert [o.status for o in outcomes] == ["ok"] * 3
    assert_clean_single_batch(server, tmp_path, 3)


# -- the command line --------------------------------------------------------------------------


async def cli(*argv: str) -> int:
    # main() runs its own event loop; a worker thread keeps the fake server's loop serving.
    return await asyncio.to_thread(main, list(argv))


def job_file(tmp_path: Path, count: int) -> Path:
    path = tmp_path / "jobs.jsonl"
    lines = [json.dumps({"prompt": f"a fox number {i}", "id": f"fox-{i}"}) for i in range(count)]
    path.write_text("\n".join(lines) + "\n")
    return path


def batch_args(jobs: Path, out: Path, *extra: str) -> list[str]:
    return ["batch", str(jobs), "-o", str(out), "--via", "batch-api", "--plain", *extra]


async def test_cli_detach_then_reattach_saves_everything(
    env: FakeXAIServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--detach exits 0 with the batch id and the collect command; the same command collects."""
    jobs, out = job_file(tmp_path, 3), tmp_path / "out"
    assert await cli(*batch_args(jobs, out, "--detach")) == EXIT_OK
    printed = capsys.readouterr().out
    assert "batch:    batch_" in printed
    assert f"xai-images batch {jobs} -o {out} --via batch-api" in printed
    assert image_files(out) == []
    assert await cli(*batch_args(jobs, out, "--poll-interval", "0.01")) == EXIT_OK
    assert_clean_single_batch(env, out, 3)


async def test_cli_no_wait_saves_what_finished_then_reattach_waits(
    env: FakeXAIServer, clock: FakeClock, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--no-wait saves finished results and exits; running again waits for the rest."""
    env.settings.batch_processing_seconds = 100
    jobs, out = job_file(tmp_path, 6), tmp_path / "out"
    assert await cli(*batch_args(jobs, out, "--detach")) == EXIT_OK
    assert await cli(*batch_args(jobs, out, "--no-wait")) == EXIT_OK
    assert image_files(out) == []
    assert "still at xAI" in capsys.readouterr().out
    clock.advance(100)
    assert await cli(*batch_args(jobs, out, "--no-wait")) == EXIT_OK
    partly = len(image_files(out))
    attach: Awaitable[int] = cli(*batch_args(jobs, out, "--poll-interval", "0.01"))
    task = asyncio.ensure_future(attach)
    await env.wait_for(lambda ledger: len(ledger.batch_request_adds) == 6)
    clock.advance(200)
    assert await task == EXIT_OK
    assert 0 < partly < 6
    assert_clean_single_batch(env, out, 6)
    assert run_records(out)[-1]["record"] == "closed"


async def test_cli_cancel_cancels_and_saves_what_finished(
    env: FakeXAIServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--cancel cancels the batch; unfinished items end failed as cancelled."""
    env.settings.batch_processing_seconds = 3600
    jobs, out = job_file(tmp_path, 3), tmp_path / "out"
    assert await cli(*batch_args(jobs, out, "--detach")) == EXIT_OK
    assert await cli(*batch_args(jobs, out, "--cancel")) == EXIT_FAILED
    assert env.ledger.batch_requests_cancelled == 3
    manifest = load_manifest(out / "manifest.jsonl")
    assert {r.status for r in manifest.values()} == {"failed"}
    assert "cancelled" in (manifest["fox-0"].error or "")
    assert "cancel" in [r["record"] for r in run_records(out)]


def test_sigint_stops_polling_without_cancelling_the_batch(tmp_path: Path) -> None:
    """Ctrl-C during `demo --via batch-api` exits 130; the batch was not cancelled."""
    out = tmp_path / "demo"
    command = [
        sys.executable,
        "-c",
        "import sys; from xai_images._ui._cli import main; sys.exit(main(sys.argv[1:]))",
        "demo",
        "--via",
        "batch-api",
        "-o",
        str(out),
        "--plain",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        if " ok " in line:
            break
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_INTERRUPTED
    assert "the batch keeps running at xAI" in stderr
    assert " 0 cancelled at the server" in stdout
    kinds = [r["record"] for r in run_records(out)]
    assert "cancel" not in kinds
    assert "closed" not in kinds


async def test_adds_start_before_the_whole_job_is_read(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """The job is read as the adds go (memory holds a few calls' worth of requests, not the
    job): the first item is in the batch before the job's last item is read."""
    count = 40
    read = 0
    read_at_first_start: list[int] = []

    def source() -> Any:
        nonlocal read
        for request in prompts(count):
            read += 1
            yield request

    def on_event(event: ProgressEvent) -> None:
        if event.kind == "started" and not read_at_first_start:
            read_at_first_start.append(read)

    outcomes = await remote(client, source(), tmp_path, on_event=on_event).collect()
    assert all(o.ok for o in outcomes)
    assert len(outcomes) == count
    assert read_at_first_start
    assert read_at_first_start[0] < count
    assert_clean_single_batch(server, tmp_path, count)


async def test_invalid_lines_between_valid_ones_fail_alone_in_a_streamed_add(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """Bad items read after the adds began still fail alone; the rest go into one batch."""
    jobs: list[Any] = prompts(12)
    jobs.insert(9, {"prompt": ""})
    jobs.insert(3, {"prompt": "x", "n": 99})
    outcomes = await remote(client, jobs, tmp_path).collect()
    failed = [o for o in outcomes if o.status == "failed"]
    assert len(failed) == 2
    assert all(isinstance(o.error, ValidationError) for o in failed)
    assert_clean_single_batch(server, tmp_path, 12)


def live_items(run: RemoteBatchRun) -> list[Item]:
    """The `Item` objects of ``run`` that are alive."""
    return [o for o in gc.get_objects() if isinstance(o, Item) and o.tally is run._tally]


def hidden_files(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.name.startswith(".")]


async def test_items_waiting_for_results_are_not_kept_in_memory(
    client: AsyncClient, server: FakeXAIServer, clock: FakeClock, tmp_path: Path
) -> None:
    """Once every item is in the batch and no result is there yet, no `Item` is alive (they
    wait in a spill file, issue 17 item 8); the results then save every item with its request
    as read (line number included), and the spill file leaves nothing behind."""
    server.settings.batch_processing_seconds = 100
    count = 30
    jobs = [GenerateRequest(f"a fox number {i}", id=f"fox-{i}", line=i + 1) for i in range(count)]
    alive_while_waiting: list[int] = []

    def on_poll(progress: Any) -> None:
        if progress.started == count and not alive_while_waiting:
            alive_while_waiting.append(len(live_items(run)))
            clock.advance(1000)  # the results arrive

    run = remote(client, jobs, tmp_path, on_poll=on_poll)
    outcomes = await run.collect()
    assert alive_while_waiting == [0]
    assert all(o.ok for o in outcomes)
    assert {o.id: o.request for o in outcomes} == {r.id: r for r in jobs}
    assert {o.id: o.line for o in outcomes} == {r.id: r.line for r in jobs}
    assert_clean_single_batch(server, tmp_path, count)
    assert hidden_files(tmp_path) == []


class HeldSpend:
    """A `Spend` whose reservations are opaque objects, picklable or not."""

    def __init__(self, *, picklable: bool) -> None:
        self.picklable = picklable
        self.reserved: dict[str, object] = {}
        self.settled: list[tuple[object, int | None]] = []
        self.released: list[object] = []

    async def reserve(self, request: Any, *, item_id: str) -> object:
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
    assert list(spend.reserved) == ["fox-5"]  # only the new item is paid in this run
    [(reservation, cost)] = spend.settled
    assert reservation is spend.reserved["fox-5"] or reservation == "fox-5"
    assert cost is not None
    assert spend.released == []


async def test_ids_sharing_a_hash_are_told_apart_in_the_batch(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Items whose ids hash alike while they wait are each saved with their own request."""
    monkeypatch.setattr("xai_images._bulk._inbatch._key", lambda _id: 42)
    outcomes = await remote(client, prompts(9), tmp_path).collect()
    assert {o.id: o.request for o in outcomes if o.ok} == {r.id: r for r in prompts(9)}
    assert_clean_single_batch(server, tmp_path, 9)
