"""``xai-images models`` and ``xai-images estimate``, and the budget flags of ``batch``.

``models`` prints the API's image models and their prices; ``estimate JOBS`` prices a job file
from that table (sending no generation request): the total, a breakdown by model and tier, and
each line that could not be read or priced.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from .._units import format_usd

__all__ = ["EXIT_BUDGET", "add_budget_flags", "add_cost_commands", "budget_line", "run_cost"]

EXIT_BUDGET = 3
"""Exit code of a bulk job that stopped because its next request could exceed ``--max-cost``."""


def add_cost_commands(sub: Any, connection: argparse.ArgumentParser) -> None:
    """Add ``models`` and ``estimate`` to the CLI's subcommands."""
    sub.add_parser("models", parents=[connection], help="list the image models and their prices")
    estimate = sub.add_parser(
        "estimate",
        parents=[connection],
        help="price a JSONL job file from the API's price table (sends no generation request)",
    )
    estimate.add_argument("jobs", metavar="JOBS.jsonl")


def add_budget_flags(batch: argparse.ArgumentParser) -> None:
    """``--max-cost`` and ``--budget-name`` of ``batch``."""
    batch.add_argument(
        "--max-cost",
        metavar="USD",
        help="stop before a request could take the job's spend past USD dollars "
        f"(exit code {EXIT_BUDGET}; run again with a higher budget to continue)",
    )
    batch.add_argument(
        "--budget-name",
        help="with --shared-limit: processes using the same name share one budget "
        "(default: the output directory's name)",
    )


def budget_line(progress: Any) -> str | None:
    """The summary line of a job run under a budget, or ``None`` without one."""
    limit = progress.max_cost_ticks
    if limit is None:
        return None
    spent = f"spent {format_usd(progress.spent_in_usd_ticks)} of {format_usd(limit)}"
    if progress.budget_reached:
        return (
            f"budget reached: {spent}; the next request could exceed it and was not sent. "
            "Run again with a higher --max-cost to do what is left."
        )
    return f"budget: {spent}"


async def run_cost(
    args: argparse.Namespace,
    client_kwargs: dict[str, Any],
    out: Callable[[str], None],
) -> int:
    """Run ``models`` or ``estimate``; returns the exit code."""
    from .._bulk._client import AsyncClient

    async with AsyncClient(**client_kwargs) as client:
        if args.command == "models":
            return await _models(client, out)
        return await _estimate(client, args.jobs, out)


async def _models(client: Any, out: Callable[[str], None]) -> int:
    models = await client.images.models.list()
    out(f"{'model':<28} {'quality':<8} {'resolution':<10} {'per image':>10}")
    for model in models:
        name = model.id + (f" ({', '.join(model.aliases)})" if model.aliases else "")
        if not model.pricing:
            shown = f"{model.image_price}c" if model.image_price is not None else "-"
            out(f"{name:<28} {'-':<8} {'-':<10} {shown:>10}")
        for tier in model.pricing:
            price = format_usd(tier.price_per_image)
            out(f"{name:<28} {tier.quality:<8} {tier.resolution:<10} {price:>10}")
            name = ""
    return 0


async def _estimate(client: Any, path: str, out: Callable[[str], None]) -> int:
    from .._bulk._estimate import estimate_job

    try:
        estimate = await estimate_job(client, path)
    except OSError as exc:
        sys.stderr.write(f"xai-images: error: cannot read {path}: {exc.strerror or exc}\n")
        return 2
    out(
        f"{'model':<28} {'quality':<8} {'resolution':<10} {'requests':>8} {'images':>7} "
        f"{'cost':>10}"
    )
    for row in estimate.rows:
        flag = "  (worst case)" if row.worst_case else ""
        out(
            f"{row.model:<28} {row.quality:<8} {row.resolution:<10} {row.requests:>8} "
            f"{row.images:>7} {format_usd(row.ticks):>10}{flag}"
        )
    worst = " (worst case: the server picks part of the tier)" if estimate.worst_case else ""
    out(f"total: {format_usd(estimate.ticks)} for {estimate.images} image(s){worst}")
    for name, message in estimate.problems:
        out(f"not priced: {name}: {message}")
    return 1 if estimate.problems else 0
