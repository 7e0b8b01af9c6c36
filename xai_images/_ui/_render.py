"""Drawing bulk-job progress: rich bars on a terminal, plain log lines otherwise.

Only the CLI imports this module. `make_renderer` picks rich progress bars on a terminal
(when ``rich`` is installed: the ``xai-images[cli]`` extra) and plain log lines otherwise;
``rich`` is imported only when bars are actually drawn.
"""

from __future__ import annotations

import sys
from typing import IO, TYPE_CHECKING, Any, Protocol

from .._bulk._progress import Progress, ProgressEvent, format_bytes, format_usd

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["PlainRenderer", "Renderer", "RichRenderer", "make_renderer"]


class Renderer(Protocol):
    """Something that shows progress: call it with events, use it as a context manager."""

    def __call__(self, event: ProgressEvent) -> None: ...

    def __enter__(self) -> Renderer: ...

    def __exit__(self, *exc_info: object) -> None: ...


def _stats(p: Progress) -> str:
    return (
        f"{p.images} images, {format_bytes(p.bytes)}, {p.images_per_second:.2f} img/s, "
        f"cost {format_usd(p.cost_in_usd_ticks)}, {p.errors} errors, "
        f"{p.rate_limited} x 429, {p.retries} retries"
    )


def _one_line_error(error: BaseException | None) -> str:
    if error is None:
        return ""
    text = " ".join(str(error).split())
    if len(text) > 200:
        text = text[:197] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class PlainRenderer:
    """Progress as plain log lines: one per finished item, one per retry, and a final line.

    Meant for output that is not a terminal (CI logs, files), where bars would be noise.

    Args:
        stream: where to write (default ``sys.stderr``).
        show_retries: also print a line for each retry and 429.
    """

    def __init__(self, stream: IO[str] | None = None, *, show_retries: bool = True) -> None:
        self._stream = stream
        self._show_retries = show_retries

    def __enter__(self) -> PlainRenderer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._flush()

    def _write(self, text: str) -> None:
        stream = self._stream if self._stream is not None else sys.stderr
        stream.write(text + "\n")

    def _flush(self) -> None:
        stream = self._stream if self._stream is not None else sys.stderr
        stream.flush()

    def __call__(self, event: ProgressEvent) -> None:
        """Print the event if it is one worth a line."""
        p = event.progress
        # The job's size when it was counted before the run (the CLI always counts it), else
        # the items read so far.
        size = p.job_size
        count = f"[{p.done}/{p.total if size is None else size}]"
        where = f" (line {event.line})" if event.line is not None else ""
        if event.kind == "saved":
            self._write(
                f"{count} ok      {event.item_id}: {event.images} image(s), "
                f"{format_bytes(event.bytes)}"
            )
        elif event.kind == "failed":
            self._write(
                f"{count} {event.status or 'failed':<7} {event.item_id}{where}: "
                f"{_one_line_error(event.error)}"
            )
        elif event.kind == "skipped":
            self._write(f"{count} skip    {event.item_id}: {event.status} in an earlier run")
        elif event.kind in ("retrying", "rate_limited") and self._show_retries:
            delay = f" in {event.delay:.1f} s" if event.delay is not None else ""
            what = "rate limited (429)" if event.kind == "rate_limited" else "retrying"
            self._write(f"{'':{len(count)}} {what}{delay} {event.item_id or ''}".rstrip())
        elif event.kind == "finished":
            state = "interrupted" if p.interrupted else "finished"
            self._write(f"{state} in {p.elapsed:.1f} s: {_stats(p)}")
            self._flush()


class RichRenderer:
    """Live progress bars (overall, generated, saved) with rate, ETA, cost and error counts.

    Requires ``rich`` (``pip install 'xai-images[cli]'``).

    Args:
        console: a ``rich.console.Console`` to draw on (default: a new one on stderr).
        transient: remove the bars when done (the caller prints its own summary).
    """

    def __init__(self, console: Console | None = None, *, transient: bool = False) -> None:
        from rich.console import Console, Group
        from rich.live import Live
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        self.console = console if console is not None else Console(stderr=True)
        self._bars = RichProgress(
            TextColumn("{task.description:<9}"),
            BarColumn(bar_width=28),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
        )
        self._overall = self._bars.add_task("overall", total=None)
        self._generated = self._bars.add_task("generated", total=None)
        self._saved = self._bars.add_task("saved", total=None)
        self._status = _StatusLine()
        # The counters line sits under the bars, so the bars keep their width on narrow
        # terminals.
        self._live = Live(
            Group(self._bars, self._status),
            console=self.console,
            transient=transient,
            refresh_per_second=8,
        )

    def __enter__(self) -> RichRenderer:
        self._live.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._live.stop()

    def __call__(self, event: ProgressEvent) -> None:
        """Update the bars from the event's counters; print a line for each failed item."""
        p = event.progress
        # An unknown size leaves the bars without an end ("?") rather than one that moves.
        total = p.job_size or None
        self._bars.update(self._overall, total=total, completed=p.done)
        self._bars.update(self._generated, total=total, completed=p.generated + p.skipped)
        self._bars.update(self._saved, total=total, completed=p.ok + p.skipped)
        counting = "" if p.job_size is not None else f"{p.total} read so far, still reading  "
        self._status.text = (
            f"{counting}{p.images} img {format_bytes(p.bytes)}  {p.images_per_second:.2f} img/s  "
            f"{format_usd(p.cost_in_usd_ticks)}  {p.in_flight} in flight  "
            f"[red]{p.errors} err[/red]  {p.rate_limited}x429  {p.retries} retries"
        )
        if event.kind == "failed":
            where = f" (line {event.line})" if event.line is not None else ""
            self.console.print(
                f"[red]{event.status or 'failed'}[/red] {event.item_id}{where}: "
                f"{_one_line_error(event.error)}",
                markup=True,
                highlight=False,
            )


class _StatusLine:
    """A line of counters that rich re-renders on every refresh."""

    def __init__(self) -> None:
        self.text = ""

    def __rich__(self) -> str:
        return self.text


def make_renderer(stream: IO[str] | None = None, *, plain: bool | None = None) -> Renderer:
    """A `RichRenderer` when ``stream`` is a terminal and ``rich`` is installed, else a
    `PlainRenderer`.

    Args:
        stream: the output (default ``sys.stderr``).
        plain: force plain lines (``True``) or bars (``False``, needs ``rich``); ``None``
            decides from the stream.
    """
    out = stream if stream is not None else sys.stderr
    if plain is None:
        isatty: Any = getattr(out, "isatty", None)
        plain = not (callable(isatty) and isatty())
    if not plain:
        try:
            from rich.console import Console
        except ImportError:
            plain = True
        else:
            return RichRenderer(Console(file=out))
    return PlainRenderer(out)
