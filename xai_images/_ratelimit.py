"""A requests-per-second limiter with no burst, adaptive on 429 answers.

The xAI image API enforces its limit every second with no burst allowance, so a token bucket
(which lets an idle client spend saved-up credit at once) would draw 429s. Instead every request
gets a start slot, and slots are spaced evenly ``1 / (rate * (1 - margin))`` seconds apart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from ._config import non_negative, positive_number

__all__ = ["RateLimiter"]

# A 429 halves the effective rate, but only once per this many seconds: the requests already in
# flight when the first 429 arrives tend to get 429s too, and each of them halving again would
# collapse the rate for no reason.
_PENALTY_COOLDOWN = 1.0


class RateLimiter:
    """Spaces request starts evenly so that at most ``rate`` requests start in any second.

    One limiter is shared by every request of a client (``AsyncClient(rate_limit=...)``), so
    concurrent tasks queue for slots in the order they ask (first come, first served).

    Args:
        rate: the allowed requests per second (the live API allows about 5).
        margin: the fraction kept in reserve against clock jitter; starts are spaced for
            ``rate * (1 - margin)`` requests per second.
        backoff: factor applied to the effective rate when a 429 arrives anyway.
        min_fraction: the effective rate never drops below ``rate * min_fraction``.
        recovery: after a 429, the effective rate grows back by ``rate * recovery`` per second
            without another 429, up to ``rate`` and never above it.
        clock: monotonic clock in seconds (injectable for tests).
        sleep: coroutine function that sleeps for a number of seconds (injectable for tests).

    Raises:
        ValueError: ``rate`` is not positive, or ``margin``/``backoff``/``min_fraction`` are out
            of range.
    """

    def __init__(
        self,
        rate: float,
        *,
        margin: float = 0.02,
        backoff: float = 0.5,
        min_fraction: float = 0.1,
        recovery: float = 0.05,
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
        self._rate = float(rate)
        self._margin = margin
        self._backoff = backoff
        self._min_rate = self._rate * min_fraction
        self._recovery = self._rate * recovery
        self._clock = clock
        self._sleep = sleep
        self._next_slot = -float("inf")
        # Rate right after the last 429, and when that was; the effective rate climbs back
        # linearly from there (computed lazily, so no background task is needed).
        self._penalty_rate = self._rate
        self._penalty_at = -float("inf")
        # No slot may start before this (set from Retry-After).
        self._paused_until = -float("inf")
        self._rate_limited = 0

    def __repr__(self) -> str:
        return (
            f"RateLimiter(rate={self._rate:g}, current_rate={self.current_rate:.3g}, "
            f"margin={self._margin:g})"
        )

    @property
    def rate(self) -> float:
        """The configured requests per second (the ceiling)."""
        return self._rate

    @property
    def current_rate(self) -> float:
        """The effective requests per second now: ``rate``, or less while recovering from 429s."""
        return self._rate_at(self._clock())

    @property
    def rate_limited_count(self) -> int:
        """How many 429s were reported with :meth:`on_rate_limited`."""
        return self._rate_limited

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
                return
            slot = self._reserve(self._clock())

    def on_rate_limited(self, retry_after: float | None) -> None:
        """Report a 429: slow down, and pause new starts for ``retry_after`` seconds if given.

        The effective rate is multiplied by ``backoff`` (at most once per second, never below
        the floor), then recovers gradually while no further 429 arrives.
        """
        now = self._clock()
        self._rate_limited += 1
        if now - self._penalty_at >= _PENALTY_COOLDOWN:
            self._penalty_rate = max(self._min_rate, self._rate_at(now) * self._backoff)
            self._penalty_at = now
            # Re-space the queue from now on at the lower rate.
            interval = 1.0 / (self._penalty_rate * (1.0 - self._margin))
            self._next_slot = max(self._next_slot, now + interval)
        if retry_after is not None and retry_after > 0:
            self._paused_until = max(self._paused_until, now + retry_after)
