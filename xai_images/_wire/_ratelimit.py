"""A requests-per-second limiter with no burst, adaptive on 429 answers (decrease, then recover).

The xAI image API enforces its limit every second with no burst allowance, so a token bucket
(which lets an idle client spend saved-up credit at once) would draw 429s. Instead every request
gets a start slot, and slots are spaced evenly ``1 / (rate * (1 - margin))`` seconds apart.

Adaptation is additive-increase / multiplicative-decrease, shaped so that scattered 429s (a
server hiccup, a neighbour sharing the key) cost little and a real overload is corrected in one
step:

- A 429 lowers the effective rate at most once per window (``window`` seconds, or until a
  ``Retry-After`` pause ends): the requests already in flight when the first 429 arrives were
  sent at the old rate, so their 429s say nothing about the new one.
- The new rate is the rate the server actually accepted over the last window (starts minus
  429s), never below ``backoff`` times the current rate nor the floor. Against a real limit
  that is the limit itself; against one stray 429 among fifty answers it is a 2 % dip, not a
  halving.
- The rate then climbs back by ``rate * recovery`` per second (by default to the full rate within
  two seconds of a halving), computed lazily from the clock: no background task.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable

from .._config import non_negative, positive_number
from .._readonly import ReadOnly

__all__ = ["LimiterFigures", "RateLimiter"]

# Fewer starts than this in the last window are too few to measure the accepted rate from; the
# decrease is then the plain backoff factor.
_MIN_SAMPLE = 5


class LimiterFigures:
    """What every rate limiter reports: its ceiling and the 429s it was told of (read-only)."""

    _rate: float
    _rate_limited: int

    rate: ReadOnly[float] = ReadOnly("_rate")
    """The configured requests per second (the ceiling)."""
    rate_limited_count: ReadOnly[int] = ReadOnly("_rate_limited")
    """How many 429s were reported (in this process) with `on_rate_limited`."""


class RateLimiter(LimiterFigures):
    """Spaces request starts evenly so that at most ``rate`` requests start in any second.

    One limiter is shared by every request of a client (``AsyncClient(rate_limit=...)``), so
    concurrent tasks queue for slots in the order they ask (first come, first served).

    Args:
        rate: the allowed requests per second (the live API allows about 5).
        margin: the fraction kept in reserve against clock jitter; starts are spaced for
            ``rate * (1 - margin)`` requests per second.
        backoff: the largest single decrease on a 429: the effective rate never drops below
            ``backoff`` times what it was (it drops less when most requests were accepted).
        min_fraction: the effective rate never drops below ``rate * min_fraction``.
        recovery: after a 429, the effective rate grows back by ``rate * recovery`` per second
            without another counted 429, up to ``rate`` and never above it.
        window: seconds over which the accepted rate is measured, and the shortest time between
            two decreases.
        clock: monotonic clock in seconds (injectable for tests).
        sleep: coroutine function that sleeps for a number of seconds (injectable for tests).

    Raises:
        ValueError: ``rate`` is not positive, or another argument is out of range.
    """

    def __init__(
        self,
        rate: float,
        *,
        margin: float = 0.02,
        backoff: float = 0.5,
        min_fraction: float = 0.1,
        recovery: float = 0.25,
        window: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        # The same number rules as every configuration value (``_config.py``): finite, no bool.
        if not positive_number(rate):
            raise ValueError(f"rate must be a positive finite number, got {rate!r}")
        if not (non_negative(margin) and margin < 1):
            raise ValueError(f"margin must be in [0, 1), got {margin!r}")
        if not (positive_number(backoff) and backoff < 1):
            raise ValueError(f"backoff must be in (0, 1), got {backoff!r}")
        if not (positive_number(min_fraction) and min_fraction <= 1):
            raise ValueError(f"min_fraction must be in (0, 1], got {min_fraction!r}")
        if not positive_number(recovery):
            raise ValueError(f"recovery must be a positive finite number, got {recovery!r}")
        if not positive_number(window):
            raise ValueError(f"window must be a positive finite number, got {window!r}")
        self._rate = float(rate)
        self._margin = margin
        self._backoff = backoff
        self._min_rate = self._rate * min_fraction
        self._recovery = self._rate * recovery
        self._window = float(window)
        self._clock = clock
        self._sleep = sleep
        self._next_slot = -float("inf")
        # Rate right after the last decrease, and when that was; the effective rate climbs back
        # linearly from there.
        self._penalty_rate = self._rate
        self._penalty_at = -float("inf")
        # 429s before this time do not lower the rate again (see the module docstring).
        self._quiet_until = -float("inf")
        # No slot may start before this (set from Retry-After).
        self._paused_until = -float("inf")
        self._rate_limited = 0
        # Start times and 429 times within the last window, to measure the accepted rate.
        self._starts: collections.deque[float] = collections.deque()
        self._limited: collections.deque[float] = collections.deque()
        self._first_start: float | None = None

    def __repr__(self) -> str:
        return (
            f"RateLimiter(rate={self._rate:g}, current_rate={self.current_rate:.3g}, "
            f"margin={self._margin:g})"
        )

    @property
    def current_rate(self) -> float:
        """The effective requests per second now: ``rate``, or less while recovering from 429s."""
        return self._rate_at(self._clock())

    def _rate_at(self, now: float) -> float:
        if self._penalty_rate >= self._rate:
            return self._rate
        recovered = self._penalty_rate + self._recovery * max(0.0, now - self._penalty_at)
        return min(self._rate, recovered)

    def _reserve(self, now: float) -> float:
        # Reserving happens synchronously (no await between read and write), so concurrent
        # callers get distinct, evenly spaced slots in call order without a lock.
        slot = max(now, self._next_slot, self._paused_until)
        self._next_slot = slot + 1.0 / (self._rate_at(slot) * (1.0 - self._margin))
        return slot

    def _forget(self, events: collections.deque[float], now: float) -> None:
        horizon = now - self._window
        while events and events[0] <= horizon:
            events.popleft()

    async def acquire(self) -> None:
        """Wait for this request's start slot.

        Slots are spaced evenly; an idle limiter does not save up credit, so there is never a
        burst. If a 429 pushed a pause (``Retry-After``) past the reserved slot while waiting,
        a new slot after the pause is taken.
        """
        slot = self._reserve(self._clock())
        while True:
            delay = slot - self._clock()
            if delay > 0:
                await self._sleep(delay)
            if self._paused_until <= slot:
                break
            slot = self._reserve(self._clock())
        now = self._clock()
        if self._first_start is None:
            self._first_start = now
        self._starts.append(now)
        self._forget(self._starts, now)

    def _accepted_rate(self, now: float) -> float | None:
        """Requests per second the server accepted over the last window, if measurable."""
        self._forget(self._starts, now)
        self._forget(self._limited, now)
        if self._first_start is None or now - self._first_start < self._window:
            return None  # less than a window of history: a burst of early 429s would mislead
        if len(self._starts) < _MIN_SAMPLE:
            return None
        accepted = max(0, len(self._starts) - len(self._limited))
        return accepted / self._window

    def on_rate_limited(self, retry_after: float | None) -> None:
        """Report a 429: slow down, and pause new starts for ``retry_after`` seconds if given.

        At most once per window (or per ``Retry-After`` pause), the effective rate drops to the
        rate the server accepted over the last window, by at most the ``backoff`` factor and
        never below the floor; it then recovers gradually while no further 429 is counted.
        """
        now = self._clock()
        self._rate_limited += 1
        self._limited.append(now)
        self._forget(self._limited, now)
        if retry_after is not None and retry_after > 0:
            self._paused_until = max(self._paused_until, now + retry_after)
        if now < self._quiet_until:
            return
        current = self._rate_at(now)
        target = current * self._backoff
        accepted = self._accepted_rate(now)
        if accepted is not None:
            target = max(target, min(current, accepted))
        self._penalty_rate = max(self._min_rate, target)
        self._penalty_at = now
        # Answers to requests started before the slower spacing takes effect are not counted.
        self._quiet_until = max(now + self._window, self._paused_until)
        # Re-space the queue from now on at the lower rate.
        interval = 1.0 / (self._penalty_rate * (1.0 - self._margin))
        self._next_slot = max(self._next_slot, now + interval)
