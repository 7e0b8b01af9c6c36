"""Units and how they are shown: cost ticks per US dollar, byte counts and costs as text."""

from __future__ import annotations

__all__ = ["TICKS_PER_USD", "format_bytes", "format_usd"]

TICKS_PER_USD = 10**10
"""``usage.cost_in_usd_ticks`` per US dollar."""


def format_bytes(count: float) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def format_usd(ticks: int) -> str:
    """Cost ticks (1 USD = 10**10) as ``"$0.1200"``."""
    return f"${ticks / TICKS_PER_USD:.4f}"
