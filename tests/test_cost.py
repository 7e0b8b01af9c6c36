"""Prices, estimates and budgets against the fake server (issue 19)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import xai_images
from xai_images import AsyncClient, GenerateRequest, NotFoundError, ValidationError
from xai_images._ui._cli import main
from xai_images.testing import FakeModel, FakeXAIServer

CENT = 100_000_000
FLAT = "grok-imagine-image"


@pytest.fixture
def fake_xai_server_options() -> dict[str, Any]:
    """Batches finish at once."""
    return {"batch_processing_seconds": 0.0}


def _jobs(count: int, model: str = FLAT) -> list[GenerateRequest]:
    return [GenerateRequest(f"prompt {i}", model=model) for i in range(count)]


async def test_models_list_and_get_carry_prices(client: AsyncClient) -> None:
    """The listing gives typed models with price tiers in ticks and USD; get() finds an alias."""
    models = await client.images.models.list()
    two = next(m for m in models if m.id == "grok-imagine-image-2.0")
    tier = two.price("low", "1k")
    assert tier is not None
    assert tier.price_per_image == 4 * CENT
    assert tier.usd == Decimal("0.04")
    by_alias = await client.images.models.get("grok-imagine-image-latest")
    assert by_alias.id == FLAT


async def test_model_get_encodes_the_id_and_unknown_is_404(
    client: AsyncClient, server: FakeXAIServer
) -> None:
    """A model id with a slash is sent encoded once; an unknown one is NotFoundError."""
    with pytest.raises(NotFoundError, match="team:custom/alias does not exist"):
        await client.images.models.get("team:custom/alias")
    [sent] = server.ledger.api_requests()
    assert sent.raw_path == "/v1/image-generation-models/team%3Acustom%2Falias"


async def test_listing_without_models_array_is_a_response_error(
    client: AsyncClient, server: FakeXAIServer
) -> None:
    """A listing without ``models`` raises APIResponseError."""
    from xai_images._api._image_models import parse_model_listing

    with pytest.raises(xai_images.APIResponseError, match="models"):
        parse_model_listing({"data": []})
    with pytest.raises(xai_images.APIResponseError, match="no id"):
        parse_model_listing({"models": [{"pricing": []}]})


async def test_fake_bills_from_its_price_table(client: AsyncClient, server: FakeXAIServer) -> None:
    """The fake's usage follows its configurable prices, by tier."""
    server.settings.models = (FakeModel("m1", {("low", "1k"): 7, ("high", "1k"): 11}),)
    low = await client.images.generate("x", model="m1", quality="low")
    high = await client.images.generate("x", model="m1", quality="high", resolution="1k")
    assert low.usage is not None
    assert low.usage.cost_in_usd_ticks == 7
    assert high.usage is not None
    assert high.usage.cost_in_usd_ticks == 11


async def test_unknown_model_is_refused_unbilled(
    client: AsyncClient, server: FakeXAIServer
) -> None:
    """An unknown model: 404 with xAI's wording, nothing billed, counted in the ledger."""
    with pytest.raises(NotFoundError, match="The model nope does not exist"):
        await client.images.generate("x", model="nope")
    assert server.ledger.images_billed == 0
    assert server.ledger.unknown_model_refusals == 1


async def test_estimate_is_worst_case_when_the_server_picks_the_tier(
    client: AsyncClient, server: FakeXAIServer
) -> None:
    """quality auto is priced at the dearest tier and flagged; a fixed tier is exact."""
    auto = await client.images.estimate(
        GenerateRequest("x", model="grok-imagine-image-2.0", quality="auto", resolution="1k")
    )
    fixed = await client.images.estimate(
        GenerateRequest("x", model="grok-imagine-image-2.0", quality="low", resolution="1k", n=2)
    )
    assert auto.worst_case
    assert auto.ticks == 12 * CENT
    assert not fixed.worst_case
    assert fixed.usd == Decimal("0.08")
    assert [r.path for r in server.ledger.api_requests() if "generations" in r.path] == []


async def test_job_estimate_names_bad_lines_and_prices_the_rest(
    client: AsyncClient, tmp_path: Path
) -> None:
    """A job file with a bad line and an unknown model: both named, the rest priced."""
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(
        '{"prompt": "a", "model": "grok-imagine-image"}\nnot json\n'
        '{"prompt": "b", "model": "nope"}\n{"prompt": "c", "model": "grok-imagine-image", "n": 3}\n'
    )
    estimate = await xai_images.bulk.estimate(client, jobs)
    assert estimate.ticks == 4 * 2 * CENT
    assert estimate.images == 4
    names = dict(estimate.problems)
    assert "line-2" in names
    assert "nope" in names["line-3"]


@pytest.mark.parametrize("bad", [-1, 0, float("nan"), "abc", True, "-0.5", object()])
async def test_bad_max_cost_is_refused_before_sending(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path, bad: object
) -> None:
    """Negative, zero, NaN or non-numeric max_cost: ValidationError naming max_cost."""
    with pytest.raises(ValidationError, match="max_cost"):
        client.bulk(_jobs(2), output_dir=tmp_path, max_cost=bad)
    assert server.ledger.requests == []


async def test_max_cost_below_one_image_sends_nothing(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """A budget smaller than the cheapest image is refused when the run starts."""
    with pytest.raises(ValidationError, match="max_cost"):
        await client.bulk(_jobs(2), output_dir=tmp_path, max_cost="0.001").collect()
    assert server.ledger.images_billed == 0


@pytest.mark.parametrize("via", ["realtime", "batch-api"])
async def test_budget_stops_the_job_and_a_higher_one_resumes(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path, via: str
) -> None:
    """Spend stays within the budget; a rerun with more does only what is left."""
    run = client.bulk(_jobs(20), output_dir=tmp_path, max_cost=Decimal("0.21"), via=via)
    outcomes = await run.collect()
    assert run.progress.budget_reached
    assert not run.progress.interrupted
    assert server.ledger.cost_in_usd_ticks <= 21 * 10**8 / 1
    assert server.ledger.cost_in_usd_ticks > 21 * 10**8 - 2 * CENT
    assert len(outcomes) == 10
    again = client.bulk(_jobs(20), output_dir=tmp_path, max_cost="1", via=via)
    rest = await again.collect()
    assert not again.progress.budget_reached
    assert sum(1 for o in rest if not o.skipped) == 10
    assert server.ledger.images_billed == 20
    assert again.progress.spent_in_usd_ticks == 40 * CENT


@pytest.mark.parametrize("via", ["realtime", "batch-api"])
async def test_unknown_model_line_fails_alone(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path, via: str
) -> None:
    """A job line with an unknown model fails alone, naming the model (with and without
    a budget)."""
    jobs = [*_jobs(2), GenerateRequest("bad", model="nope")]
    outcomes = await client.bulk(jobs, output_dir=tmp_path, via=via).collect()
    failed = [o for o in outcomes if o.status == "failed"]
    assert len(failed) == 1
    assert "nope" in str(failed[0].error)
    assert sum(o.ok for o in outcomes) == 2


async def test_cli_models_estimate_and_budget(
    env: FakeXAIServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """models prints the table; estimate the total; batch --max-cost exits 3 when reached."""
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(f'{{"prompt": "p{i}", "model": "{FLAT}"}}\n' for i in range(6)))
    assert await asyncio.to_thread(main, ["models"]) == 0
    assert "grok-imagine-image-2.0" in capsys.readouterr().out
    assert await asyncio.to_thread(main, ["estimate", str(jobs)]) == 0
    assert "total: $0.1200" in capsys.readouterr().out
    assert await asyncio.to_thread(main, ["estimate", str(tmp_path / "missing.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err
    argv = ["batch", str(jobs), "-o", str(tmp_path / "out"), "--max-cost", "0.05", "--plain"]
    code = await asyncio.to_thread(main, argv)
    out = capsys.readouterr().out
    assert code == 3
    assert "budget reached" in out
    assert env.ledger.images_billed == 2


async def test_sync_client_lists_models_and_estimates(server: FakeXAIServer) -> None:
    """The blocking Client reads the price table and estimates too."""

    def use() -> tuple[int, int]:
        with xai_images.Client(api_key=server.api_key, base_url=server.base_url) as sync:
            listed = sync.images.models.list()
            assert sync.images.models.get(FLAT).id == FLAT
            return len(listed), sync.images.estimate(GenerateRequest("x", model=FLAT)).ticks

    count, ticks = await asyncio.to_thread(use)
    assert count == 2
    assert ticks == 2 * CENT


async def test_cli_generate_refuses_an_unusable_output_dir_before_paying(
    env: FakeXAIServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """-o naming a file (or a path under one): an error naming it, nothing sent."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for target in (blocker, blocker / "sub"):
        code = await asyncio.to_thread(main, ["generate", "a fox", "-o", str(target)])
        assert code == 1
        assert "a-file" in capsys.readouterr().err
    assert env.ledger.requests_started == 0


async def test_cli_generate_keeps_a_paid_image_when_saving_fails(
    env: FakeXAIServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Saving fails after payment: the URL is printed, the bytes kept, the error says where."""
    import tempfile

    async def broken_save(*_args: object, **_kwargs: object) -> None:
        raise xai_images.SaveError("disk full", path=tmp_path)

    monkeypatch.setattr(xai_images.ImagesResponse, "save", broken_save)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    code = await asyncio.to_thread(main, ["generate", "a fox", "-o", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 1
    assert "image url" in captured.out
    kept = await asyncio.to_thread(lambda: list(tmp_path.glob("xai-images-recovered-*/*.png")))
    assert len(kept) == 1
    assert str(kept[0].parent) in captured.err
    assert env.ledger.images_billed == 1


async def test_budget_learns_the_default_model_from_the_first_answer(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """Requests without model: the first is priced at the dearest model, the rest at the
    model the server answered with, so the job ends within one image of the budget."""
    jobs = [GenerateRequest(f"p{i}") for i in range(80)]
    run = client.bulk(jobs, output_dir=tmp_path, max_cost="1.00", concurrency=4)
    await run.collect()
    assert run.progress.budget_reached
    assert server.ledger.cost_in_usd_ticks <= 100 * CENT
    assert server.ledger.cost_in_usd_ticks > 100 * CENT - 2 * CENT


async def test_resumed_budget_counts_a_lost_answer_at_its_worst_case(
    client: AsyncClient, server: FakeXAIServer, tmp_path: Path
) -> None:
    """An item whose answer was lost counts its worst-case price when the job is resumed."""
    from xai_images.testing import Reply

    server.enqueue(Reply.drop())
    jobs = _jobs(1)
    first = client.bulk(jobs, output_dir=tmp_path, max_cost="1")
    [outcome] = await first.collect()
    assert outcome.status == "unknown"
    again = client.bulk(_jobs(3), output_dir=tmp_path, max_cost="0.05")
    await again.collect()
    # $0.02 counted for the lost answer: of $0.05, room for one more $0.02 image, not two.
    assert again.progress.budget_reached
    assert server.ledger.images_billed == 2
