"""The bulk engine against the fake server: outcomes, manifest, resume, failures, cancellation."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from xai_images import (
    AsyncClient,
    DownloadError,
    DownloadOptions,
    EditRequest,
    GenerateRequest,
    ImageBlockedError,
    InternalServerError,
    OutcomeUnknownError,
    RetryPolicy,
    ValidationError,
)
from xai_images._bulk._jobs import derive_id
from xai_images.bulk import Outcome, ProgressEvent, load_jobs, load_manifest
from xai_images.testing import FakeXAIServer, Reply, sample_image

pytestmark = pytest.mark.usefixtures("xai_instant_retries")


@pytest.fixture
def fake_xai_server_options() -> dict[str, Any]:
    """Small images keep bulk runs quick."""
    return {"image_bytes": 512}


@pytest.fixture
def xai_client_options() -> dict[str, Any]:
    """Two API retries; a failed download is not retried."""
    return {
        "max_retries": 2,
        "download": DownloadOptions(retry=RetryPolicy(max_attempts=1)),
    }


async def run(client: AsyncClient, requests: Any, out: Path, **kwargs: Any) -> list[Outcome]:
    return await client.bulk(requests, output_dir=out, **kwargs).collect()


def by_id(outcomes: list[Outcome]) -> dict[str, Outcome]:
    return {o.id: o for o in outcomes}


async def test_each_item_yields_an_outcome_with_saved_files(
    client: AsyncClient, tmp_path: Path
) -> None:
    """Every request ends ok with its files named {id}-{index}.{ext} and a manifest line."""
    requests = [GenerateRequest("a cat"), GenerateRequest("a dog", n=2, id="dog")]
    outcomes = by_id(await run(client, requests, tmp_path))
    assert all(o.ok for o in outcomes.values())
    assert [p.name for p in outcomes["dog"].files] == ["dog-0.png", "dog-1.png"]
    cat = derive_id(requests[0])
    assert [p.name for p in outcomes[cat].files] == [f"{cat}-0.png"]
    assert all(p.is_file() for o in outcomes.values() for p in o.files)
    manifest = load_manifest(tmp_path / "manifest.jsonl")
    assert {k: v.status for k, v in manifest.items()} == {cat: "ok", "dog": "ok"}
    assert manifest["dog"].cost_in_usd_ticks == 400_000_000
    assert manifest["dog"].files[1].bytes == (tmp_path / "dog-1.png").stat().st_size


def test_derived_id_is_stable_and_content_based() -> None:
    """The same request always gets the same id; a different one gets another."""
    assert derive_id(GenerateRequest("x", n=2)) == derive_id(GenerateRequest("x", n=2))
    assert derive_id(GenerateRequest("x", n=2)) != derive_id(GenerateRequest("x", n=3))
    assert derive_id(GenerateRequest("x")).startswith("gen-")
    assert derive_id(EditRequest("x", image="https://h/i.png")).startswith("edit-")


async def test_one_failure_does_not_cancel_the_rest(
    server: FakeXAIServer, client: AsyncClient, tmp_path: Path
) -> None:
    """An invalid item and a request whose 500s outlive retries fail alone; the rest succeed."""
    server.enqueue(Reply.error(500), Reply.error(500), Reply.error(500))
    requests = [
        GenerateRequest("first", id="first"),
        GenerateRequest("bad", id="bad", n=11),
        GenerateRequest("last", id="last"),
    ]
    outcomes = by_id(await run(client, requests, tmp_path, concurrency=1))
    assert outcomes["first"].status == "failed"
    assert isinstance(outcomes["first"].error, InternalServerError)
    assert outcomes["bad"].status == "failed"
    assert isinstance(outcomes["bad"].error, ValidationError)
    assert outcomes["last"].ok
    assert server.ledger.images_billed == 1


async def test_resume_skips_done_items_and_bills_once(
    server: FakeXAIServer, client: AsyncClient, tmp_path: Path
) -> None:
    """A second run of the same job skips every done item: nothing is generated twice."""
    requests = [GenerateRequest(f"prompt {i}") for i in range(5)]
    await run(client, requests, tmp_path)
    again = await run(client, requests, tmp_path)
    assert all(o.skipped and o.ok for o in again)
    assert all(p.is_file() for o in again for p in o.files)
    assert set(server.ledger.billed_prompts.values()) == {1}
    assert server.ledger.images_billed == 5


async def test_resume_regenerates_item_whose_file_is_gone(
    server: FakeXAIServer, client: AsyncClient, tmp_path: Path
) -> None:
    """A done item whose file was deleted is not considered intact and runs again."""
    [first] = await run(client, [GenerateRequest("p", id="p")], tmp_path)
    first.files[0].unlink()
    [second] = await run(client, [GenerateRequest("p", id="p")], tmp_path)
    assert second.ok
    assert not second.skipped
    assert second.files[0].is_file()


async def test_failed_items_are_retried_only_when_asked(
    server: FakeXAIServer, client: AsyncClient, tmp_path: Path
) -> None:
    """A plain re-run leaves failed items alone; retry_failed runs exactly those again."""
    server.enqueue(Reply.error(500), Reply.error(500), Reply.error(500))
    requests = [GenerateRequest("f", id="f"), GenerateRequest("g", id="g")]
    await run(client, requests, tmp_path, concurrency=1)
    plain = by_id(await run(client, requests, tmp_path))
    assert plain["f"].status == "failed"
    assert plain["f"].skipped
    assert server.ledger.billed_prompts["f"] == 0
    retried = by_id(await run(client, requests, tmp_path, retry_failed=True))
    assert retried["f"].ok
    assert not retried["f"].skipped
    assert retried["g"].skipped
    assert dict(server.ledger.billed_prompts) == {"f": 1, "g": 1}


async def test_unknown_outcome_is_never_resent_without_consent(
    server: FakeXAIServer, client: AsyncClient, tmp_path: Path
) -> None:
    """An answer lost after sending is `unknown`; it is resent only with resend_unknown."""
    server.enqueue(Reply.drop())
    requests = [GenerateRequest("lost", id="lost")]
    [first] = await run(client, requests, tmp_path)
    assert first.status == "unknown"
    assert isinstance(first.error, OutcomeUnknownError)
    [again] = await run(client, requests, tmp_path, retry_failed=True)
    assert again.status == "unknown"
    assert again.skipped
    assert server.ledger.billed_prompts["lost"] == 1
    [resent] = await run(client, requests, tmp_path, resend_unknown=True)
    assert resent.ok
    assert server.ledger.billed_prompts["lost"] == 2


async def test_moderated_item_is_blocked(
    server: FakeXAIServer, client: AsyncClient, tmp_path: Path
) -> None:
    """An answer without any image is a `blocked` outcome, recorded in the manifest."""
    server.settings.moderation = "empty"
    [outcome] = await run(client, [GenerateRequest("nope", id="nope")], tmp_path)
    assert outcome.status == "blocked"
    assert isinstance(outcome.error, ImageBlockedError)
    assert load_manifest(tmp_path / "manifest.jsonl")["nope"].status == "blocked"


async def test_failed_download_is_retried_from_url_without_paying_again(
    server: FakeXAIServer, client: AsyncClient, tmp_path: Path
) -> None:
    """A billed item whose download failed is downloaded again on retry, not regenerated."""
    server.enqueue_download(Reply.error(500))
    requests = [GenerateRequest("dl", id="dl")]
    [first] = await run(client, requests, tmp_path)
    assert first.status == "failed"
    record = load_manifest(tmp_path / "manifest.jsonl")["dl"]
    assert record.billed
    assert record.pending
    [second] = await run(client, requests, tmp_path, retry_failed=True)
    assert second.ok
    assert second.files[0].is_file()
    assert server.ledger.billed_prompts["dl"] == 1


async def test_malformed_job_line_is_reported_with_its_number(
    client: AsyncClient, tmp_path: Path
) -> None:
    """A bad JSONL line becomes a failed outcome naming its line; the other lines run."""
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"prompt": "one"}\n{"prompt": "two",\n\n{"prompt": "three", "n": 0}\n')
    outcomes = await run(client, jobs, tmp_path / "out")
    failed = sorted((o for o in outcomes if not o.ok), key=lambda o: o.line or 0)
    assert [(o.id, o.line) for o in failed] == [("line-2", 2), ("line-4", 4)]
    assert "line 2" in str(failed[0].error)
    assert "line 4: n" in str(failed[1].error)
    assert sum(o.ok for o in outcomes) == 1


def test_load_jobs_can_stop_at_the_first_bad_line(tmp_path: Path) -> None:
    """With on_error="stop", loading raises naming the line, before anything is sent."""
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"prompt": "one"}\n{"prompt": "two", "colour": "red"}\n')
    with pytest.raises(ValidationError, match="line 2: colour"):
        load_jobs(jobs, on_error="stop")


async def test_edit_job_resolves_paths_against_the_job_file(
    server: FakeXAIServer, client: AsyncClient, tmp_path: Path
) -> None:
    """An `image` key makes an edit whose relative path is read from the job file's folder."""
    (tmp_path / "in.png").write_bytes(sample_image("png", 512, 1))
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"prompt": "paint it", "image": "in.png", "id": "e1"}) + "\n")
    [outcome] = await run(client, jobs, tmp_path / "out")
    assert outcome.ok
    [request] = [r for r in server.ledger.api_requests() if r.path.endswith("/images/edits")]
    assert str(request.body["image"]["url"]).startswith("data:image/png;base64,")


async def test_missing_edit_input_fails_before_sending(
    server: FakeXAIServer, client: AsyncClient, tmp_path: Path
) -> None:
    """An edit whose input file does not exist fails validation and is never sent."""
    [outcome] = await run(client, [EditRequest("x", image="missing.png")], tmp_path)
    assert outcome.status == "failed"
    assert isinstance(outcome.error, ValidationError)
    assert server.ledger.api_requests() == []


async def test_identical_requests_get_distinct_ids_explicit_duplicates_fail(
    client: AsyncClient, tmp_path: Path
) -> None:
    """The same request twice is two items (-2 suffix); an explicit id used twice fails."""
    requests = [
        GenerateRequest("twice"),
        GenerateRequest("twice"),
        GenerateRequest("a", id="same"),
        GenerateRequest("b", id="same"),
    ]
    outcomes = await run(client, requests, tmp_path)
    base = derive_id(requests[0])
    assert {o.id for o in outcomes if o.ok} == {base, f"{base}-2", "same"}
    [dup] = [o for o in outcomes if not o.ok]
    assert "unique" in str(dup.error)


async def test_async_iterable_of_dicts_is_accepted(client: AsyncClient, tmp_path: Path) -> None:
    """Requests may come from an async iterable, as job-line dicts."""

    async def source() -> AsyncIterator[dict[str, Any]]:
        for i in range(3):
            yield {"prompt": f"p{i}", "id": f"i{i}"}

    outcomes = await run(client, source(), tmp_path)
    assert sorted(o.id for o in outcomes if o.ok) == ["i0", "i1", "i2"]


async def test_progress_events_and_counters(
    server: FakeXAIServer, client: AsyncClient, tmp_path: Path
) -> None:
    """Subscribers see each stage, retries and the final counters (images, bytes, cost)."""
    server.enqueue(Reply.error(500))
    events: list[ProgressEvent] = []
    batch = client.bulk(
        [GenerateRequest(f"p{i}") for i in range(3)],
        output_dir=tmp_path,
        concurrency=1,
        on_event=events.append,
    )
    outcomes = await batch.collect()
    kinds = {e.kind for e in events}
    assert {"queued", "started", "generated", "saved", "finished"} <= kinds
    p = batch.progress
    assert (p.ok, p.images, p.cost_in_usd_ticks) == (3, 3, 600_000_000)
    sizes = [f.bytes for o in outcomes if o.record for f in o.record.files]
    assert p.bytes == sum(sizes)
    assert p.retries == 1
    assert events[-1].kind == "finished"


async def test_429_is_counted_when_limiter_present(server: FakeXAIServer, tmp_path: Path) -> None:
    """A 429 that is retried shows as one rate_limited and one retry in the counters."""
    server.enqueue(Reply.error(429))
    async with AsyncClient(
        api_key=server.api_key, base_url=server.base_url, rate_limit=1000
    ) as limited:
        batch = limited.bulk([GenerateRequest("r")], output_dir=tmp_path)
        [outcome] = await batch.collect()
    assert outcome.ok
    assert (batch.progress.rate_limited, batch.progress.retries) == (1, 1)
    assert outcome.record is not None
    assert outcome.record.attempts == 2


async def test_cancellation_leaves_no_partial_files_and_a_readable_manifest(
    server: FakeXAIServer, client: AsyncClient, tmp_path: Path
) -> None:
    """Cancelling the consumer mid-run stops cleanly: no .part files, manifest loads."""
    server.settings.generation_latency = 0.05
    server.settings.download_latency = 0.05
    batch = client.bulk(
        [GenerateRequest(f"c{i}") for i in range(20)], output_dir=tmp_path, concurrency=4
    )
    first = asyncio.Event()

    async def consume() -> None:
        async with batch:
            async for _ in batch:
                first.set()

    task = asyncio.ensure_future(consume())
    await first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    names = await asyncio.to_thread(os.listdir, tmp_path)
    assert [n for n in names if n.endswith(".part")] == []
    manifest = load_manifest(tmp_path / "manifest.jsonl")
    assert 1 <= len(manifest) < 20
    for record in manifest.values():
        if record.status == "ok":
            assert record.files_intact(tmp_path, check_sha256=True)


async def test_stop_then_resume_bills_every_prompt_once(
    server: FakeXAIServer, client: AsyncClient, tmp_path: Path
) -> None:
    """stop() finishes in-flight items; a re-run does the rest; every prompt is billed once."""
    server.settings.generation_latency = 0.02
    requests = [GenerateRequest(f"s{i}") for i in range(12)]
    batch = client.bulk(requests, output_dir=tmp_path, concurrency=2)
    done = 0
    async with batch:
        async for _ in batch:
            done += 1
            if done == 3:
                batch.stop()
    assert batch.progress.interrupted
    assert done < 12
    rest = await run(client, requests, tmp_path)
    assert sum(not o.skipped for o in rest) == 12 - done
    assert server.ledger.billed_prompts == {r.prompt: 1 for r in requests}
    assert len(load_manifest(tmp_path / "manifest.jsonl")) == 12


async def test_unreachable_api_stops_the_run_early(tmp_path: Path) -> None:
    """When nothing gets through (connection refused), the run stops instead of failing all."""
    async with AsyncClient(api_key="k", base_url="http://127.0.0.1:9/v1", max_retries=0) as dead:
        outcomes = await run(
            dead, [GenerateRequest(f"u{i}") for i in range(50)], tmp_path, concurrency=2
        )
    assert 1 <= len(outcomes) <= 4
    assert all(o.status == "failed" for o in outcomes)


async def test_download_retries_are_counted_and_reported(
    server: FakeXAIServer, tmp_path: Path
) -> None:
    """A retried image download adds to Progress.retries and emits a `retrying` event."""
    server.enqueue_download(Reply.error(503))
    events: list[ProgressEvent] = []
    async with AsyncClient(
        api_key=server.api_key,
        base_url=server.base_url,
        download=DownloadOptions(retry=RetryPolicy(max_attempts=3)),
    ) as c:
        batch = c.bulk([GenerateRequest("dl-retry")], output_dir=tmp_path, on_event=events.append)
        [outcome] = await batch.collect()
    assert outcome.ok
    assert batch.progress.retries == 1
    [retrying] = [e for e in events if e.kind == "retrying"]
    assert isinstance(retrying.error, DownloadError)
    assert "HTTP 503" in str(retrying.error)
    assert retrying.item_id == outcome.id


async def test_retry_failed_generates_a_billed_blocked_item_again(
    server: FakeXAIServer, client: AsyncClient, tmp_path: Path
) -> None:
    """retry_failed runs a blocked item again even though the API billed it."""
    server.settings.moderation = "blocked"
    requests = [GenerateRequest("withheld", id="withheld")]
    [first] = await client.bulk(requests, output_dir=tmp_path).collect()
    assert first.status == "blocked"
    assert load_manifest(tmp_path / "manifest.jsonl")["withheld"].billed
    server.settings.moderation = None
    [second] = await client.bulk(requests, output_dir=tmp_path, retry_failed=True).collect()
    assert (second.ok, second.skipped) == (True, False)
    assert server.ledger.billed_prompts["withheld"] == 2


@pytest.mark.parametrize("rate_limit", [None, 1000.0], ids=["no-limiter", "limiter"])
async def test_every_429_is_counted_once(
    server: FakeXAIServer, tmp_path: Path, rate_limit: float | None
) -> None:
    """Each 429 counts once in Progress.rate_limited, the final unretried one included."""
    server.enqueue(*[Reply.error(429) for _ in range(3)])
    events: list[ProgressEvent] = []
    async with AsyncClient(
        api_key=server.api_key, base_url=server.base_url, max_retries=2, rate_limit=rate_limit
    ) as c:
        batch = c.bulk([GenerateRequest("busy")], output_dir=tmp_path, on_event=events.append)
        [outcome] = await batch.collect()
    assert outcome.status == "failed"
    assert (batch.progress.rate_limited, batch.progress.retries) == (3, 2)
    assert sum(e.kind == "rate_limited" for e in events) == 3


async def test_outcome_files_are_absolute_for_a_relative_output_dir(
    client: AsyncClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With output_dir="out", Outcome.files are absolute paths of the saved files."""
    monkeypatch.chdir(tmp_path)
    requests = [GenerateRequest("rel", id="rel")]
    [outcome] = await client.bulk(requests, output_dir="out").collect()
    assert outcome.files == (tmp_path / "out" / "rel-0.png",)
    assert outcome.files[0].is_file()
    [skipped] = await client.bulk(requests, output_dir="out").collect()
    assert skipped.skipped
    assert skipped.files == outcome.files


def test_client_batch_documents_every_argument() -> None:
    """AsyncClient.bulk's docstring (the public entry point) documents each of its arguments,
    the typed keywords (``**options: Unpack[BulkOptions]``) included."""
    from xai_images.types import BulkOptions

    doc = inspect.getdoc(AsyncClient.bulk) or ""
    names = [n for n in inspect.signature(AsyncClient.bulk).parameters if n != "self"]
    names = [n for n in names if n != "options"] + list(BulkOptions.__annotations__)
    assert len(names) > 10
    assert [n for n in names if f"{n}:" not in doc] == []


async def test_two_runs_on_one_client_count_only_their_own_retries(
    server: FakeXAIServer, client: AsyncClient, tmp_path: Path
) -> None:
    """Runs sharing a client attribute each retry to their own item (events carry the origin)."""
    server.enqueue(Reply.error(503))
    first = client.bulk([GenerateRequest("one")], output_dir=tmp_path / "a")
    second = client.bulk([GenerateRequest("two")], output_dir=tmp_path / "b")
    outcomes = await asyncio.gather(first.collect(), second.collect())
    assert all(o.ok for run_outcomes in outcomes for o in run_outcomes)
    assert sorted([first.progress.retries, second.progress.retries]) == [0, 1]
    server.enqueue(Reply.error(503))
    await client.images.generate("outside the runs")
    assert first.progress.retries + second.progress.retries == 1
