"""Per-iteration work budgets of an event loop, shared by every client on that loop.

asyncio runs every ready callback in one loop iteration. When a hundred requests become ready
together (a wave of web traffic, the bulk engine's first burst), their request starts all run
before the loop looks at its timers or sockets again: ~0.1-0.2 ms each, tens of milliseconds in
all. The same happens when many ``b64_json`` answers are being decoded at once, one chunk each
per iteration. A `LoopBudget` admits a bounded amount of such work per iteration; the
rest waits, first come first served, for the next iteration. Waiting happens before anything is
sent, so no guarantee of the request path changes.

A spend that fits is admitted at once (a lone request starts without waiting); the others wait
for a ``call_soon`` callback (the reset, once per iteration while there is work) that admits the
oldest waiters up to the budget and wakes them for the next iteration.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque

__all__ = ["DECODE_BYTES_PER_ITERATION", "STARTS_PER_ITERATION", "LoopBudget", "budgets"]

# Request starts (API attempts and image fetches) per loop iteration: each costs ~0.1-0.2 ms of
# the loop (aiohttp's request and connection setup), so 16 hold it for ~1.5-3 ms.
STARTS_PER_ITERATION = 16
# base64 text decoded per loop iteration by all answers together (~1.3 ms of a2b_base64).
DECODE_BYTES_PER_ITERATION = 1024 * 1024


class LoopBudget:
    """At most ``limit`` units of work per iteration of one event loop (plus one overshoot).

    A spend is admitted at once, without waiting, while nobody waits and the iterations it can
    fall in still have room; otherwise it waits, first come first served, for the budget's
    reset, a ``call_soon`` callback that runs once per iteration while there is work. The reset
    admits the oldest waiters while less than ``limit`` was admitted (so a spend larger than
    ``limit`` is admitted alone, never starved); they run in the next iteration.

    Where an iteration starts is not observable, so the bound is kept with two counts. Work
    admitted at once between two resets runs in the iteration of the first reset or in the
    next one (which holds the second reset). ``_next`` counts what will run in that next
    iteration before its reset: the waiters the reset woke and the spends admitted at once
    since. At a reset it becomes ``_now``, what may already have run in the current iteration,
    and an immediate spend must fit next to both. A lone call therefore starts in its own
    iteration, and a wave of calls loses no iteration to the first ``limit`` of its starts.
    """

    __slots__ = ("_limit", "_loop", "_next", "_now", "_reset_pending", "_waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self._loop = loop
        self._limit = limit
        self._now = 0
        self._next = 0
        self._reset_pending = False
        self._waiters: deque[tuple[asyncio.Future[None], int]] = deque()

    @property
    def limit(self) -> int:
        return self._limit

    def __repr__(self) -> str:
        return f"<LoopBudget limit={self._limit} waiting={len(self._waiters)}>"

    async def spend(self, amount: int = 1) -> None:
        """Return at once if ``amount`` fits this iteration, else in the first one it fits."""
        if not self._waiters and self._now < self._limit and self._next < self._limit:
            self._now += amount
            self._next += amount
            if not self._reset_pending:
                self._reset_pending = True
                self._loop.call_soon(self._reset)
            return
        future: asyncio.Future[None] = self._loop.create_future()
        self._waiters.append((future, amount))
        if not self._reset_pending:
            self._reset_pending = True
            self._loop.call_soon(self._reset)
        # A waiter cancelled before admission is skipped by the reset; one cancelled after it
        # leaves its share unused for one iteration.
        await future

    def _reset(self) -> None:
        self._reset_pending = False
        spent = 0
        waiters = self._waiters
        while waiters and spent < self._limit:
            future, amount = waiters.popleft()
            if future.done():  # cancelled while waiting
                continue
            future.set_result(None)
            spent += amount
        # What was admitted for the iteration after the previous reset may be running in this
        # one; the woken waiters run in the next one.
        self._now = self._next
        self._next = spent
        if self._now or spent or waiters:
            # Scheduled after the wake-ups, so that it runs in the iteration of the admitted
            # tasks, after them: a task that asks again at once is counted with them.
            self._reset_pending = True
            self._loop.call_soon(self._reset)


class _Budgets:
    __slots__ = ("decode", "starts")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.starts = LoopBudget(loop, STARTS_PER_ITERATION)
        self.decode = LoopBudget(loop, DECODE_BYTES_PER_ITERATION)


# One set per event loop, shared by every client on it; forgotten with the loop.
_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Budgets] = (
    weakref.WeakKeyDictionary()
)


def budgets(loop: asyncio.AbstractEventLoop | None = None) -> _Budgets:
    """The budgets of ``loop`` (default: the running loop): ``.starts`` and ``.decode``."""
    if loop is None:
        loop = asyncio.get_running_loop()
    found = _by_loop.get(loop)
    if found is None:
        found = _by_loop[loop] = _Budgets(loop)
    return found
