"""Per-iteration work budgets of an event loop, shared by every client on that loop.

asyncio runs every ready callback in one loop iteration. When a hundred requests become ready
together (a wave of web traffic, the bulk engine's first burst), their request starts all run
before the loop looks at its timers or sockets again: ~0.1-0.2 ms each, tens of milliseconds in
all. The same happens when many ``b64_json`` answers are being decoded at once, one chunk each
per iteration. A `LoopBudget` admits a bounded amount of such work per iteration; the
rest waits, first come first served, for the next iteration. Waiting happens before anything is
sent, so no guarantee of the request path changes.

Every spender waits for a ``call_soon`` callback (the reset, once per iteration while there is
work) that admits the oldest waiters up to the budget and wakes them: they run in the next
iteration, which holds nothing else the budget admitted.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque

__all__ = [
    "ANSWER_MIN_SPEND",
    "DECODE_BYTES_PER_ITERATION",
    "STARTS_PER_ITERATION",
    "LoopBudget",
    "budgets",
]

# Request starts (API attempts and image fetches) per loop iteration: each costs ~0.1-0.2 ms of
# the loop (aiohttp's request and connection setup), so 16 hold it for ~1.5-3 ms.
STARTS_PER_ITERATION = 16
# base64 text decoded per loop iteration by all answers together (~1.3 ms of a2b_base64).
DECODE_BYTES_PER_ITERATION = 1024 * 1024
# What a piece of an answer costs at least, whatever its size: the piece that ends a small
# answer is followed in the same loop step by the answer's parsing, its models and the caller's
# next steps (a save's setup), ~0.1-0.2 ms; charged as this many bytes, at most 16 such
# answers are handled per iteration instead of every answer that arrived (128 url answers in
# one iteration held the loop for 10-12 ms).
ANSWER_MIN_SPEND = 64 * 1024


class LoopBudget:
    """At most ``limit`` units of work per iteration of one event loop (plus one overshoot).

    Every spend waits for the budget's reset, which admits the oldest waiters while less than
    ``limit`` was admitted (so a spend larger than ``limit`` is admitted alone, never starved).
    The admitted ones run in the next iteration, and nothing else is admitted for it: that
    makes the bound exact without knowing where an iteration starts. It costs each spend one
    or two loop iterations of latency (microseconds on an idle loop).
    """

    __slots__ = ("_limit", "_loop", "_reset_pending", "_waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self._loop = loop
        self._limit = limit
        self._reset_pending = False
        self._waiters: deque[tuple[asyncio.Future[None], int]] = deque()

    @property
    def limit(self) -> int:
        return self._limit

    def __repr__(self) -> str:
        return f"<LoopBudget limit={self._limit} waiting={len(self._waiters)}>"

    async def spend(self, amount: int = 1) -> None:
        """Return in the next iteration whose budget ``amount`` fits in."""
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
        if spent or waiters:
            # Scheduled after the wake-ups, so that it runs in the iteration of the admitted
            # tasks, after them: a task that asks again at once is admitted for the next one.
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
