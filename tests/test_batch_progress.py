"""Progress counters and the two renderers (plain lines, rich bars)."""

from __future__ import annotations

import io
import re

import pytest

from xai_images import InternalServerError
from xai_images._ui._render import PlainRenderer, RichRenderer, make_renderer
from xai_images.bulk import Progress, ProgressEvent


def sample_progress() -> Progress:
    clock = iter([0.0, 10.0, 10.0, 10.0, 10.0])
    p = Progress(clock=lambda: next(clock))
    p.total, p.ok, p.failed, p.images, p.bytes = 4, 2, 1, 5, 2048
    p.cost_in_usd_ticks = 1_000_000_000
    return p


def test_counters_derive_rates_and_cost() -> None:
    """images/s, cost in USD and done/errors derive from the raw counters."""
    p = sample_progress()
    assert p.images_per_second == pytest.approx(0.5)
    assert p.cost_usd == pytest.approx(0.1)
    assert (p.done, p.errors) == (3, 1)


def test_plain_renderer_writes_one_line_per_finished_item() -> None:
    """Saved and failed items each get a line with the count, id and error."""
    out = io.StringIO()
    p = sample_progress()
    with PlainRenderer(out) as render:
        render(ProgressEvent("queued", "a", p))
        render(ProgressEvent("saved", "a", p, images=2, bytes=2048))
        error = InternalServerError("boom", status_code=500)
        render(ProgressEvent("failed", "b", p, status="failed", error=error, line=3))
    lines = out.getvalue().splitlines()
    assert lines == [
        "[3/4] ok      a: 2 image(s), 2.0 KiB",
        "[3/4] failed  b (line 3): InternalServerError: 500: boom",
    ]


def test_make_renderer_is_plain_when_not_a_terminal() -> None:
    """Output that is not a TTY gets plain log lines, never bars."""
    assert isinstance(make_renderer(io.StringIO()), PlainRenderer)


def test_rich_renderer_draws_bars_and_counters() -> None:
    """The rich renderer shows the stage bars and a counters line, and prints failures."""
    from rich.console import Console

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    p = sample_progress()
    with RichRenderer(console) as render:
        render(ProgressEvent("saved", "a", p, images=2))
        render(ProgressEvent("failed", "b", p, status="failed", error=RuntimeError("x")))
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())
    assert "overall" in text
    assert "saved" in text
    assert "$0.1000" in text
    assert "failed b" in text
