"""Progress of a bulk job: typed events, running counters, and two renderers.

The batch engine calls ``on_event(event)`` for every step of every item. Each event carries the
live :class:`Progress` counters. :func:`make_renderer` picks rich progress bars on a terminal
(when ``rich`` is installed: the ``xai-images[cli]`` extra) and plain log lines otherwise.
``rich`` is imported only when bars are actually drawn, never at package import.
"""

from __future__ import annotations

import contextvars
import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Literal, Protocol

import attrs

if TYPE_CHECKING:
    from rich.console import Console

__all__ = [
    "EventKind",
    "PlainRenderer",
    "Progress",
    "ProgressEvent",
    "Renderer",
    "RichRenderer",
    "format_bytes",
    "format_usd",
    "make_renderer",
    "notify",
    "observing",
]

EventKind = Literal[
    "queued",
    "skipped",
    "started",
    "generated",
    "saved",
    "failed",
    "retrying",
    "rate_limited",
    "finished",
]
"""What happened: ``queued`` (item accepted), ``skipped`` (done in an earlier run), ``started``
(its API request is about to be sent), ``generated`` (the API answered with images), ``saved``
(every image is on disk: the item is ok), ``failed`` (the item ended failed, blocked or unknown),
``retrying`` (a request or download is retried), ``rate_limited`` (a 429 arrived),
``finished`` (the whole run is over; ``item_id`` is ``None``)."""

TICKS_PER_USD = 10**10

ClientSignal = Literal["attempt", "retry", "rate_limited", "download_retry"]
"""What the request path reports to a bulk job: an API request ``attempt`` is about to be sent,
an API request will be retried (``retry``), the API answered 429 (``rate_limited``: sent for
every 429, retried or not, before its ``retry``), or an image download will be retried
(``download_retry``)."""

_Observer = Callable[[ClientSignal, "float | None", "BaseException | None"], None]
_observer: contextvars.ContextVar[_Observer | None] = contextvars.ContextVar(
    "xai_images_observer", default=None
)


def notify(
    signal: ClientSignal, *, delay: float | None = None, error: BaseException | None = None
) -> None:
    """Tell the bulk job running the current task what the request path is doing.

    Called by the client's request path and the download layer; a no-op (one context
    variable lookup) outside a bulk job. ``delay`` is the wait before the retry, or the
    ``Retry-After`` of a 429.
    """
    observer = _observer.get()
    if observer is not None:
        observer(signal, delay, error)


def observing(observer: _Observer) -> contextvars.Token[_Observer | None]:
    """Route :func:`notify` calls of the current task (and tasks it creates) to ``observer``.

    Returns the token to pass to ``_observer.reset`` (the batch engine runs each item in its own
    task, so it never needs to reset).
    """
    return _observer.set(observer)


class Progress:
    """Running counters of a bulk job, updated by the batch engine before each event.

    Attributes:
        total: items known so far (grows while requests are read).
        ok, failed, blocked, unknown: items finished with that status in this run.
        skipped: items not run because an earlier run settled them.
        started: items whose API request was sent at least once.
        generated: items the API answered with images.
        images: images saved in this run.
        bytes: bytes saved in this run.
        cost_in_usd_ticks: cost reported by the API in this run.
        rate_limited: 429 answers the API sent (each one, whether retried or not).
        retries: retried API requests and retried image downloads.
        interrupted: the run was asked to stop before every item was done.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.started_at = clock()
        self.finished_at: float | None = None
        self.total = 0
        self.ok = 0
        self.failed = 0
        self.blocked = 0
        self.unknown = 0
        self.skipped = 0
        self.started = 0
        self.generated = 0
        self.images = 0
        self.bytes = 0
        self.cost_in_usd_ticks = 0
        self.rate_limited = 0
        self.retries = 0
        self.interrupted = False

    def __repr__(self) -> str:
        return (
            f"Progress(total={self.total}, ok={self.ok}, failed={self.failed}, "
            f"blocked={self.blocked}, unknown={self.unknown}, skipped={self.skipped}, "
            f"images={self.images}, bytes={self.bytes}, cost_usd={self.cost_usd:.4f}, "
            f"rate_limited={self.rate_limited}, retries={self.retries})"
        )

    @property
    def done(self) -> int:
        """Items settled: finished in this run (any status) or skipped."""
        return self.ok + self.failed + self.blocked + self.unknown + self.skipped

    @property
    def errors(self) -> int:
        """Items that ended failed, blocked or unknown in this run."""
        return self.failed + self.blocked + self.unknown

    @property
    def in_flight(self) -> int:
        """Items started but not finished."""
        return self.started - (self.ok + self.failed + self.blocked + self.unknown)

    @property
    def elapsed(self) -> float:
        """Seconds since the run started (frozen once it finished)."""
        end = self.finished_at if self.finished_at is not None else self._clock()
        return max(0.0, end - self.started_at)

    @property
    def images_per_second(self) -> float:
        """Images saved per second of elapsed time."""
        elapsed = self.elapsed
        return self.images / elapsed if elapsed > 0 else 0.0

    @property
    def cost_usd(self) -> float:
        """The cost reported so far, in US dollars."""
        return self.cost_in_usd_ticks / TICKS_PER_USD

    def finish(self) -> None:
        """Freeze :attr:`elapsed` (called by the engine when the run ends)."""
        if self.finished_at is None:
            self.finished_at = self._clock()


@attrs.frozen
class ProgressEvent:
    """One step of one item of a bulk job.

    Attributes:
        kind: see :data:`EventKind`.
        item_id: the item's id (``None`` for ``finished``).
        progress: the live counters, already updated for this event.
        status: for ``failed``/``skipped``: the item's status (``failed``, ``blocked``,
            ``unknown``, or ``ok`` for an item skipped because it is done).
        images: images generated (``generated``) or saved (``saved``).
        bytes: bytes saved (``saved``).
        error: the error, for ``failed`` and ``retrying``.
        attempt: the attempt that failed, for ``retrying``.
        delay: seconds until the retry or the end of the rate-limit pause, when known.
        line: the item's line in the JSONL job file, when it came from one.
    """

    kind: EventKind
    item_id: str | None
    progress: Progress = attrs.field(eq=False, repr=False)
    status: str | None = None
    images: int = 0
    bytes: int = 0
    error: BaseException | None = None
    attempt: int | None = None
    delay: float | None = None
    line: int | None = None


class Renderer(Protocol):
    """Something that shows progress: call it with events, use it as a context manager."""

    def __call__(self, event: ProgressEvent) -> None: ...

    def __enter__(self) -> Renderer: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


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

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
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
        count = f"[{p.done}/{p.total}]"
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

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._live.stop()

    def __call__(self, event: ProgressEvent) -> None:
        """Update the bars from the event's counters; print a line for each failed item."""
        p = event.progress
        total = p.total or None
        self._bars.update(self._overall, total=total, completed=p.done)
        self._bars.update(self._generated, total=total, completed=p.generated + p.skipped)
        self._bars.update(self._saved, total=total, completed=p.ok + p.skipped)
        self._status.text = (
            f"{p.images} img {format_bytes(p.bytes)}  {p.images_per_second:.2f} img/s  "
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
    """A :class:`RichRenderer` when ``stream`` is a terminal and ``rich`` is installed, else a
    :class:`PlainRenderer`.

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
