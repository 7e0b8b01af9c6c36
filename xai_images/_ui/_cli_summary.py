"""The summary the command line prints at the end of a bulk job."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["print_summary"]


def print_summary(
    run: Any, outcomes_failed: list[Any], out: Callable[[str], None], *, rich_console: Any = None
) -> None:
    """The end-of-run table of a bulk job, then the items that are not ok (first 20)."""
    from .._bulk._progress import format_bytes, format_usd

    p = run.progress
    rows = [
        ("items", str(p.total)),
        ("ok", str(p.ok)),
        ("failed", str(p.failed)),
        ("blocked", str(p.blocked)),
        ("unknown outcome", str(p.unknown)),
        ("skipped (done earlier)", str(p.skipped)),
        ("images saved", str(p.images)),
        ("bytes saved", format_bytes(p.bytes)),
        ("cost", format_usd(p.cost_in_usd_ticks)),
        ("elapsed", f"{p.elapsed:.1f} s"),
        ("images/s", f"{p.images_per_second:.2f}"),
        ("429 answers", str(p.rate_limited)),
        ("retries", str(p.retries)),
    ]
    if rich_console is not None:
        from rich.table import Table

        table = Table(title="interrupted" if p.interrupted else "summary", show_header=False)
        table.add_column(style="bold")
        table.add_column(justify="right")
        for key, value in rows:
            table.add_row(key, value)
        rich_console.print(table)
    else:
        out("interrupted:" if p.interrupted else "summary:")
        width = max(len(k) for k, _ in rows)
        for key, value in rows:
            out(f"  {key:<{width}}  {value}")
    from ._cli_cost import budget_line

    budget = budget_line(p)
    if budget is not None:
        out(budget)
    if outcomes_failed:
        out(f"not ok ({len(outcomes_failed)}):")
        for outcome in outcomes_failed[:20]:
            where = f" (line {outcome.line})" if outcome.line is not None else ""
            error = " ".join(str(outcome.error).split())[:160] if outcome.error else ""
            out(f"  {outcome.status:<8} {outcome.id}{where}: {error}")
        if len(outcomes_failed) > 20:
            out(f"  ... and {len(outcomes_failed) - 20} more (see the manifest)")
