"""A bulk job's progress in Jupyter: the counters as HTML, and a display updated in place.

Nothing here imports IPython unless a kernel is already running (then IPython is imported).
"""

from __future__ import annotations

import html
import sys
import time
from typing import TYPE_CHECKING, Any

from .._units import format_bytes, format_usd

if TYPE_CHECKING:
    from ._progress import Progress, ProgressEvent

__all__ = ["LiveProgress", "progress_html"]


def progress_html(progress: Progress) -> str:
    """A bulk job's counters as a small HTML block with a progress bar."""
    p = progress
    total = max(p.total, p.done, 1)
    state = "finished" if p.finished_at is not None else "running"
    if p.interrupted:
        state = "interrupted"
    return (
        f'<div style="font-family:monospace;font-size:12px"><progress value="{p.done}" '
        f'max="{total}" style="width:240px"></progress> {p.done}/{p.total} {state}<br>'
        f"{p.ok} ok, {p.errors} errors, {p.skipped} skipped, {p.images} images, "
        f"{html.escape(format_bytes(p.bytes))}, {p.images_per_second:.2f} img/s, "
        f"{format_usd(p.cost_in_usd_ticks)}, {p.rate_limited}\u00d7429, {p.retries} retries</div>"
    )


def _kernel_running() -> bool:
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class LiveProgress:
    """A bulk job's progress in a notebook: one display under the cell, updated in place at most
    four times a second; does nothing outside a Jupyter kernel.

    The sync client's bulk jobs use one on their own. It is also an ``on_event`` callback, for
    bulk jobs of the async client in a notebook: ``client.bulk(..., on_event=LiveProgress())``.
    """

    _INTERVAL = 0.25

    def __init__(self) -> None:
        self._handle: Any = None
        self._last = 0.0
        self._off = not _kernel_running()

    def __call__(self, event: ProgressEvent) -> None:
        """Show the event's counters (an ``on_event`` callback)."""
        self.show(event.progress, final=event.kind == "finished")

    def show(self, progress: Progress, *, final: bool = False) -> None:
        """Draw ``progress``, unless the last redraw was very recent (``final`` always draws)."""
        if self._off:
            return
        now = time.monotonic()
        if not final and self._handle is not None and now - self._last < self._INTERVAL:
            return
        self._last = now
        bundle = {"text/html": progress_html(progress), "text/plain": repr(progress)}
        try:  # a display problem must not stop the job
            if self._handle is None:
                from IPython import display as ipython_display

                show: Any = ipython_display.display
                self._handle = show(bundle, raw=True, display_id=True)
            else:
                self._handle.update(bundle, raw=True)
        except Exception:
            self._off = True
