"""Per-iteration work budgets of an event loop, shared by every client on that loop.

asyncio runs every ready callback in one loop iteration. When a hundred requests become ready
together (a wave of web traffic, the bulk engine's first burst), their request starts all run
before the loop looks at its timers or sockets again: ~0.1-0.2 ms each, tens of milliseconds in
all. The same happens when many ``b64_json`` answers are being decoded at once, one chunk each
per iteration. A :class:`LoopBudget` admits a bounded amount of such work per iteration; the
rest waits, first come first served, for the next iteration. Waiting happens before anything is
sent, so no guarantee of the request path changes.

A budget is spent, then reset by a ``call_soon`` callback scheduled by the first spender of an
iteration: that callback runs at the start of the next iteration, admits the oldest waiters up
to the budget and wakes them (they run in the iteration after the reset, which is the one the
budget was charged for).
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

    A single spend larger than what is left is admitted when the iteration has spent nothing
    yet, so that no amount ever waits forever.
    """

    __slots__ = ("_limit", "_loop", "_reset_pending", "_spent", "_waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self._loop = loop
        self._limit = limit
        self._spent = 0
        self._reset_pending = False
        self._waiters: deque[tuple[asyncio.Future[None], int]] = deque()

    @property
    def limit(self) -> int:
        return self._limit

    def __repr__(self) -> str:
        return f"<LoopBudget {self._spent}/{self._limit} waiting={len(self._waiters)}>"

    async def spend(self, amount: int = 1) -> None:
        """Return once ``amount`` fits in this iteration's budget (at once when it does)."""
        if not self._waiters and self._spent < self._limit:
            self._charge(amount)
            return
        future: asyncio.Future[None] = self._loop.create_future()
        self._waiters.append((future, amount))
        self._schedule_reset()
        # A cancelled waiter is skipped by the reset; one admitted and then cancelled leaves
        # its share unused for one iteration only.
        await future

    def _charge(self, amount: int) -> None:
        self._spent += amount
        self._schedule_reset()

    def _schedule_reset(self) -> None:
        if not self._reset_pending:
            self._reset_pending = True
            self._loop.call_soon(self._reset)

    def _reset(self) -> None:
        self._reset_pending = False
        self._spent = 0
        waiters = self._waiters
        while waiters and self._spent < self._limit:
            future, amount = waiters.popleft()
            if future.done():  # cancelled while waiting
                continue
            future.set_result(None)
            self._spent += amount
        if self._spent or waiters:
            # The admitted waiters run in the next iteration: their share is charged to it.
            self._schedule_reset()


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
