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
import contextlib
import heapq
import itertools
import weakref
from collections import deque

__all__ = [
    "ANSWER_BYTES_DECODING",
    "ANSWER_MIN_SPEND",
    "DECODE_BYTES_PER_ITERATION",
    "STARTS_PER_ITERATION",
    "Backlog",
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
# Bytes of answers being decoded (as announced by Content-Length, else as received) plus decoded
# images held by saves, on one loop, before the next answer waits to start (see `Backlog`); and
# the longest it waits.
ANSWER_BYTES_DECODING = 32 * 1024 * 1024
ANSWER_MAX_WAIT = 2.0


class LoopBudget:
    """At most ``limit`` units of work per iteration of one event loop (plus one overshoot).

    Every spend waits for the budget's reset, which admits waiters, oldest ticket first, while
    less than ``limit`` was admitted (so a spend larger than ``limit`` is admitted alone, never
    starved). The admitted ones run in the next iteration, and nothing else is admitted for it:
    that makes the bound exact without knowing where an iteration starts. It costs each spend
    one or two loop iterations of latency (microseconds on an idle loop).

    A spend's ticket is drawn when it asks, unless it passes one drawn earlier (`ticket`): the
    pieces of one answer spend with the ticket of its first piece, so the answers that started
    first finish first, instead of every answer on the loop advancing one piece per turn and
    all of them holding their half-decoded images until the end.
    """

    __slots__ = ("_limit", "_loop", "_reset_pending", "_tickets", "_waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self._loop = loop
        self._limit = limit
        self._reset_pending = False
        self._tickets = itertools.count()
        # (ticket, arrival, future, amount): a heap, oldest ticket first, then first come.
        self._waiters: list[tuple[int, int, asyncio.Future[None], int]] = []

    @property
    def limit(self) -> int:
        return self._limit

    def __repr__(self) -> str:
        return f"<LoopBudget limit={self._limit} waiting={len(self._waiters)}>"

    def ticket(self) -> int:
        """A place in line, for the later spends of one piece of work."""
        return next(self._tickets)

    async def spend(self, amount: int = 1, ticket: int | None = None) -> None:
        """Return in the next iteration whose budget ``amount`` fits in."""
        future: asyncio.Future[None] = self._loop.create_future()
        arrival = next(self._tickets)
        heapq.heappush(
            self._waiters, (arrival if ticket is None else ticket, arrival, future, amount)
        )
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
            _, _, future, amount = heapq.heappop(waiters)
            if future.done():  # cancelled while waiting
                continue
            future.set_result(None)
            spent += amount
        if spent or waiters:
            # Scheduled after the wake-ups, so that it runs in the iteration of the admitted
            # tasks, after them: a task that asks again at once is admitted for the next one.
            self._reset_pending = True
            self._loop.call_soon(self._reset)


class Backlog:
    """Bytes of the answers being decoded on one loop, and of the decoded images that saves on
    it hold. An answer starts only while they are within ``limit`` (first come, first served),
    waiting at most ``max_wait`` seconds so that no answer can time out waiting. Without it, a
    hundred large ``b64_json`` answers arriving together all advance at once and hold all their
    decoded images until the last piece of each (peak memory about the sum of all answers), and
    answers decoded faster than their files are written pile up in the saves; with it, a few
    decode at a time and finish in the order they started, while the others wait in their
    sockets' buffers. Saves always finish on their own, so a wait always ends.
    """

    __slots__ = ("_limit", "_loop", "_max_wait", "_waiters", "bytes")

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int, max_wait: float) -> None:
        self._loop = loop
        self._limit = limit
        self._max_wait = max_wait
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.bytes = 0

    def __repr__(self) -> str:
        return f"<Backlog bytes={self.bytes} limit={self._limit} waiting={len(self._waiters)}>"

    async def admit(self, amount: int) -> None:
        """Wait for room (or ``max_wait``), then count ``amount``."""
        if self.bytes > self._limit or self._waiters:
            waiter: asyncio.Future[None] = self._loop.create_future()
            self._waiters.append(waiter)
            timer = self._loop.call_later(self._max_wait, _wake, waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake_next()  # its turn came: pass it on
                raise
            finally:
                timer.cancel()
                # Woken by its timer or cancelled: out of the line, or it would make later
                # answers queue behind it.
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
        self.bytes += amount
        self._wake_next()

    def add(self, amount: int) -> None:
        """Count ``amount`` more for an answer already admitted."""
        self.bytes += amount

    def remove(self, amount: int) -> None:
        """An answer ended: uncount what it counted, and let the next one in if there is room."""
        self.bytes -= amount
        self._wake_next()

    def _wake_next(self) -> None:
        waiters = self._waiters
        while waiters and self.bytes <= self._limit:
            waiter = waiters.popleft()
            if not waiter.done():  # not woken by its timer, not cancelled
                waiter.set_result(None)
                return


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _Budgets:
    __slots__ = ("answers", "decode", "starts")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.starts = LoopBudget(loop, STARTS_PER_ITERATION)
        self.decode = LoopBudget(loop, DECODE_BYTES_PER_ITERATION)
        self.answers = Backlog(loop, ANSWER_BYTES_DECODING, ANSWER_MAX_WAIT)


# One set per event loop, shared by every client on it; forgotten with the loop.
_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Budgets] = (
    weakref.WeakKeyDictionary()
)


def budgets(loop: asyncio.AbstractEventLoop | None = None) -> _Budgets:
    """The budgets of ``loop`` (default: the running loop): ``.starts``, ``.decode`` and
    ``.answers``."""
    if loop is None:
        loop = asyncio.get_running_loop()
    found = _by_loop.get(loop)
    if found is None:
        found = _by_loop[loop] = _Budgets(loop)
    return found
