"""RateLimiter: even spacing, no burst, FIFO, adaptation on 429 (mostly on a fake clock)."""

from __future__ import annotations

import asyncio
import itertools

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
    limiter, clock = make(10.0, min_fraction=0.1)
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
