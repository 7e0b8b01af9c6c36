"""RateLimiter: even spacing, no burst, FIFO, adaptation on 429 (mostly on a fake clock).

Adaptation: scattered 429s cost little, a real limit is found, recovery is fast.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import itertools
import random
from collections.abc import Callable

import pytest

from xai_images import RateLimiter


class FakeClock:
    """A manual clock whose sleep advances time instead of waiting."""

    def __init__(self) -> None:
        self.now = 0.0
        self.woke: dict[str, float] = {}

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        target = self.now + delay
        task = asyncio.current_task()
        if task is not None:
            self.woke[task.get_name()] = target
        self.now = max(self.now, target)
        await asyncio.sleep(0)


def make(rate: float = 5.0, **kwargs: float) -> tuple[RateLimiter, FakeClock]:
    clock = FakeClock()
    return RateLimiter(rate, clock=clock, sleep=clock.sleep, **kwargs), clock


async def starts(limiter: RateLimiter, clock: FakeClock, count: int) -> list[float]:
    times = []
    for _ in range(count):
        await limiter.acquire()
        times.append(clock.now)
    return times


def max_in_window(times: list[float], window: float = 1.0) -> int:
    times = sorted(times)
    return max(sum(1 for u in times if t <= u < t + window) for t in times)


async def test_first_acquire_is_immediate() -> None:
    """An unused limiter lets the first request start at once."""
    limiter, clock = make()
    clock.now = 100.0
    await limiter.acquire()
    assert clock.now == 100.0


async def test_starts_are_evenly_spaced_with_margin() -> None:
    """Consecutive starts are 1 / (rate * (1 - margin)) apart."""
    limiter, clock = make(5.0, margin=0.02)
    times = await starts(limiter, clock, 6)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps == pytest.approx([1 / (5 * 0.98)] * 5)


async def test_never_more_than_rate_in_any_second() -> None:
    """No sliding 1 s window holds more than `rate` starts, while using >= 95 % of the rate."""
    limiter, clock = make(5.0)
    times = await starts(limiter, clock, 200)
    assert max_in_window(times) <= 5
    assert 199 / (times[-1] - times[0]) >= 0.95 * 5


async def test_idle_limiter_does_not_accumulate_credit() -> None:
    """After a long idle period, starts are still spaced: no burst."""
    limiter, clock = make(5.0)
    await limiter.acquire()
    clock.now += 60.0
    times = await starts(limiter, clock, 5)
    assert times[1] - times[0] == pytest.approx(1 / (5 * 0.98))


async def test_concurrent_waiters_are_served_in_call_order() -> None:
    """Concurrent callers get distinct, evenly spaced slots in the order they asked."""
    limiter, clock = make(10.0, margin=0.0)
    tasks = [asyncio.ensure_future(limiter.acquire()) for _ in range(8)]
    for i, task in enumerate(tasks):
        task.set_name(f"w{i}")
    await asyncio.gather(*tasks)
    # The first waiter starts at once (never sleeps); the others wake at their slots.
    assert [clock.woke[f"w{i}"] for i in range(1, 8)] == pytest.approx(
        [i * 0.1 for i in range(1, 8)]
    )


async def test_rate_limited_halves_rate() -> None:
    """A 429 multiplies the effective rate by the backoff factor."""
    limiter, _ = make(4.0)
    limiter.on_rate_limited(None)
    assert limiter.current_rate == pytest.approx(2.0)
    assert limiter.rate_limited_count == 1


async def test_burst_of_429s_halves_only_once_per_second() -> None:
    """Several 429s arriving together reduce the rate once, not once each."""
    limiter, _ = make(4.0)
    for _ in range(5):
        limiter.on_rate_limited(None)
    assert limiter.current_rate == pytest.approx(2.0)


async def test_rate_never_drops_below_floor() -> None:
    """Repeated 429s stop reducing the rate at the floor."""
    limiter, clock = make(10.0, min_fraction=0.1, recovery=0.001)
    for _ in range(20):
        clock.now += 1.0
        limiter.on_rate_limited(None)
    assert limiter.current_rate == pytest.approx(1.0)


async def test_rate_recovers_gradually_and_never_above_configured() -> None:
    """After a 429 the rate climbs back over time and stops at the configured rate."""
    limiter, clock = make(10.0, recovery=0.05)
    limiter.on_rate_limited(None)
    assert limiter.current_rate == pytest.approx(5.0)
    clock.now += 4.0
    assert limiter.current_rate == pytest.approx(7.0)
    clock.now += 100.0
    assert limiter.current_rate == pytest.approx(10.0)


async def test_retry_after_pauses_new_starts() -> None:
    """With Retry-After, no request starts before the pause ends."""
    limiter, clock = make(5.0)
    await limiter.acquire()
    limiter.on_rate_limited(3.0)
    await limiter.acquire()
    assert clock.now >= 3.0


async def test_waiter_reserved_before_pause_waits_for_it() -> None:
    """A waiter holding a slot before a 429 arrived is moved past the Retry-After pause."""
    limiter, clock = make(5.0, margin=0.0)
    await limiter.acquire()
    waiter = asyncio.ensure_future(limiter.acquire())  # holds slot t=0.2
    await asyncio.sleep(0)
    limiter.on_rate_limited(2.0)
    await waiter
    assert clock.now >= 2.0


@pytest.mark.parametrize("bad", [{"rate": 0}, {"rate": 5, "margin": 1.0}, {"rate": -1}])
def test_invalid_arguments_raise(bad: dict[str, float]) -> None:
    """Nonsense configuration is refused at construction."""
    with pytest.raises(ValueError, match="must be"):
        RateLimiter(**bad)


@pytest.mark.realtime
async def test_real_clock_against_fake_server_gets_no_429() -> None:
    """With the limit set to the server's, 12 real requests draw zero 429s."""
    testing = pytest.importorskip("xai_images.testing")
    if not hasattr(testing, "FakeXAIServer"):
        pytest.skip("FakeXAIServer not available yet")
    import aiohttp

    limiter = RateLimiter(5.0)
    async with (
        testing.FakeXAIServer(image_bytes=512) as server,
        aiohttp.ClientSession() as session,
    ):
        server.settings.rps_limit = 5

        async def one(i: int) -> int:
            await limiter.acquire()
            async with session.post(
                f"{server.base_url}/images/generations",
                json={"prompt": f"p{i}", "response_format": "url"},
                headers={"Authorization": f"Bearer {server.api_key}"},
            ) as resp:
                await resp.read()
                return resp.status

        statuses = await asyncio.gather(*(one(i) for i in range(12)))
    assert statuses == [200] * 12
    assert server.ledger.rate_limited == 0


# -- adaptation -----------------------------------------------------------------------------------


async def run_for(
    limiter: RateLimiter, clock: FakeClock, seconds: float, answer: Callable[[float], bool]
) -> tuple[list[float], int]:
    """Start requests back to back for ``seconds`` of fake time; ``answer(now)`` False is a 429.

    Returns the start times and the number of 429s.
    """
    end = clock.now + seconds
    times: list[float] = []
    limited = 0
    while clock.now < end:
        await limiter.acquire()
        times.append(clock.now)
        if not answer(clock.now):
            limited += 1
            limiter.on_rate_limited(None)
    return times, limited


async def test_scattered_429s_keep_the_rate_near_the_limit() -> None:
    """With 10 % random 429s at 50/s, starts keep above 85 % of the configured rate."""
    limiter, clock = make(50.0)
    rng = random.Random(1)
    times, limited = await run_for(limiter, clock, 20.0, lambda _now: rng.random() >= 0.1)
    assert limited > 50  # the faults did arrive, many times per second
    assert len(times) / 20.0 >= 0.85 * 50.0


async def test_scattered_429s_never_collapse_the_rate() -> None:
    """Even at the worst moment the effective rate stays well above the floor."""
    limiter, clock = make(50.0)
    rng = random.Random(2)
    lowest = 50.0

    def answer(_now: float) -> bool:
        nonlocal lowest
        lowest = min(lowest, limiter.current_rate)
        return rng.random() >= 0.1

    await run_for(limiter, clock, 20.0, answer)
    assert lowest >= 0.5 * 50.0


def server_limit(limit: int) -> Callable[[float], bool]:
    """A fake server accepting at most ``limit`` requests in any sliding second."""
    window: collections.deque[float] = collections.deque()

    def answer(now: float) -> bool:
        while window and window[0] <= now - 1.0:
            window.popleft()
        if len(window) >= limit:
            return False
        window.append(now)
        return True

    return answer


async def test_a_real_limit_below_the_configured_rate_is_found() -> None:
    """Configured at 20/s against a server allowing 10/s, the limiter settles near 10/s."""
    limiter, clock = make(20.0)
    answer = server_limit(10)
    await run_for(limiter, clock, 5.0, answer)  # settle
    times, limited = await run_for(limiter, clock, 20.0, answer)
    achieved = len(times) / 20.0
    assert 8.0 <= achieved <= 13.0
    # Without adaptation half of all starts (10 of 20 each second) would be refused.
    assert limited / len(times) < 0.25


async def test_decrease_goes_to_the_accepted_rate_not_a_blind_halving() -> None:
    """One 429 among a full window of accepted starts lowers the rate a little."""
    limiter, clock = make(50.0, margin=0.0)
    await run_for(limiter, clock, 2.0, lambda _now: True)
    limiter.on_rate_limited(None)
    assert limiter.current_rate == pytest.approx(49.0, abs=1.5)


async def test_decrease_is_at_most_the_backoff_factor() -> None:
    """However many 429s the window holds, one decrease divides the rate by at most 1/backoff."""
    limiter, clock = make(10.0, backoff=0.5)
    await run_for(limiter, clock, 2.0, lambda _now: True)
    limiter.on_rate_limited(None)  # the first decrease; the next second is quiet
    first = clock.now
    await run_for(limiter, clock, 0.9, lambda _now: False)  # every start refused
    clock.now = first + 1.0  # the quiet second is over
    rate = limiter.current_rate
    limiter.on_rate_limited(None)
    assert limiter.current_rate == pytest.approx(rate * 0.5, rel=0.05)


async def test_early_429_before_a_full_window_uses_the_backoff() -> None:
    """Without a window of history there is nothing to measure: the rate halves."""
    limiter, _ = make(10.0)
    await limiter.acquire()
    limiter.on_rate_limited(None)
    assert limiter.current_rate == pytest.approx(5.0)


async def test_recovers_to_the_configured_rate_within_seconds() -> None:
    """After a halving and no further 429, the full rate is back within 2 s (default recovery)."""
    limiter, clock = make(50.0)
    limiter.on_rate_limited(None)
    assert limiter.current_rate == pytest.approx(25.0)
    clock.now += 1.0
    assert 25.0 < limiter.current_rate < 50.0
    clock.now += 1.0
    assert limiter.current_rate == pytest.approx(50.0)


async def test_429s_inside_the_quiet_window_do_not_lower_again() -> None:
    """429s answering requests sent before the decrease took effect are counted, not acted on."""
    limiter, clock = make(10.0)
    limiter.on_rate_limited(None)
    clock.now += 0.5
    for _ in range(5):
        limiter.on_rate_limited(None)
    assert limiter.current_rate == pytest.approx(5.0 + 0.5 * 2.5)
    assert limiter.rate_limited_count == 6


async def test_retry_after_extends_the_quiet_window() -> None:
    """429s arriving during a Retry-After pause (sent before it) do not lower the rate again."""
    limiter, clock = make(10.0)
    limiter.on_rate_limited(3.0)
    clock.now += 2.0
    before = limiter.current_rate
    limiter.on_rate_limited(None)
    assert limiter.current_rate == pytest.approx(before)
    clock.now += 1.5  # past the pause and the window: a new 429 counts again
    rate = limiter.current_rate
    limiter.on_rate_limited(None)
    assert limiter.current_rate < rate


async def test_a_429_after_recovery_counts_again() -> None:
    """Once the quiet window has passed, the next 429 lowers the rate again."""
    limiter, clock = make(10.0)
    limiter.on_rate_limited(None)
    clock.now += 1.0
    rate = limiter.current_rate
    limiter.on_rate_limited(None)
    assert limiter.current_rate == pytest.approx(rate * 0.5)


def test_public_interface_is_unchanged() -> None:
    """acquire(), on_rate_limited(retry_after) and the three properties keep their shape."""
    assert inspect.iscoroutinefunction(RateLimiter.acquire)
    assert list(inspect.signature(RateLimiter.on_rate_limited).parameters) == [
        "self",
        "retry_after",
    ]
    for name in ("rate", "current_rate", "rate_limited_count"):
        assert isinstance(getattr(RateLimiter, name), property)


@pytest.mark.parametrize("bad", [{"window": 0}, {"recovery": 0}, {"backoff": 1.0}])
def test_invalid_adaptation_arguments_raise(bad: dict[str, float]) -> None:
    """Nonsense adaptation settings are refused at construction."""
    with pytest.raises(ValueError, match="must be"):
        RateLimiter(5.0, **bad)
