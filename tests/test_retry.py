"""RetryPolicy, backoff, Retry-After parsing and the test switch for sleeping."""

from __future__ import annotations

import asyncio
import email.utils
import time

import pytest

from xai_images import RetryPolicy
from xai_images._wire._retry import parse_retry_after, sleep
from xai_images.testing import instant_retries


def test_defaults_match_the_documented_values() -> None:
    """The default policy is 3 attempts, 0.5 s initial and 8 s max backoff, no unknown retries."""
    policy = RetryPolicy()
    assert (policy.max_attempts, policy.initial_backoff, policy.max_backoff) == (3, 0.5, 8.0)
    assert policy.max_retry_after == 60.0
    assert policy.retry_unknown_outcome is False


@pytest.mark.parametrize(
    "kwargs",
    [{"max_attempts": 0}, {"max_attempts": True}, {"max_elapsed": 0}, {"initial_backoff": -1}],
)
def test_out_of_range_fields_are_rejected(kwargs: dict[str, object]) -> None:
    """A policy with a nonsensical field raises ValueError at construction."""
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_backoff_cap_doubles_and_stops_at_max_backoff() -> None:
    """The jitter bound doubles per attempt and never exceeds max_backoff."""
    policy = RetryPolicy(initial_backoff=0.5, max_backoff=3.0)
    assert [policy.backoff_cap(a) for a in (1, 2, 3, 4, 100)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_delay_is_full_jitter_within_the_cap() -> None:
    """Backoff delays are spread between 0 and the cap (not all equal)."""
    policy = RetryPolicy(initial_backoff=1.0, max_backoff=8.0)
    delays = [policy.delay(3) for _ in range(200)]
    assert all(0.0 <= d <= 4.0 for d in delays)
    assert len(set(delays)) > 100


def test_delay_honours_retry_after_exactly() -> None:
    """A server-requested wait is used as is, even beyond the backoff cap."""
    assert RetryPolicy(max_backoff=1.0).delay(1, retry_after=7.5) == 7.5


def test_with_attempts_turns_retries_into_attempts() -> None:
    """max_retries=N means N + 1 attempts; None keeps the policy."""
    policy = RetryPolicy()
    assert policy.with_attempts(0).max_attempts == 1
    assert policy.with_attempts(4).max_attempts == 5
    assert policy.with_attempts(None) is policy


def test_with_attempts_rejects_negative_retries() -> None:
    """A negative max_retries is a ValueError naming the argument."""
    with pytest.raises(ValueError, match="max_retries"):
        RetryPolicy().with_attempts(-1)


def test_parse_retry_after_seconds() -> None:
    """Retry-After in (possibly fractional) seconds is read as seconds."""
    assert parse_retry_after({"Retry-After": "2"}) == 2.0
    assert parse_retry_after({"Retry-After": "1.5"}) == 1.5


def test_parse_retry_after_is_case_insensitive_for_plain_dicts() -> None:
    """Header names match whatever their spelling."""
    assert parse_retry_after({"RETRY-AFTER": "3"}) == 3.0


def test_parse_retry_after_ms_wins() -> None:
    """retry-after-ms is preferred over Retry-After."""
    assert parse_retry_after({"retry-after-ms": "250", "Retry-After": "9"}) == 0.25


def test_parse_retry_after_http_date() -> None:
    """An HTTP date gives the seconds until that date."""
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    value = parse_retry_after({"Retry-After": when})
    assert value is not None
    assert 27 <= value <= 31


def test_parse_retry_after_past_date_is_zero() -> None:
    """A date in the past means retry now, never a negative wait."""
    when = email.utils.formatdate(time.time() - 300, usegmt=True)
    assert parse_retry_after({"Retry-After": when}) == 0.0


@pytest.mark.parametrize("value", ["soon", "-3", "nan", "inf", ""])
def test_parse_retry_after_garbage_is_none(value: str) -> None:
    """An unreadable or negative Retry-After is ignored."""
    assert parse_retry_after({"Retry-After": value}) is None


def test_parse_retry_after_absent_is_none() -> None:
    """No header, no wait."""
    assert parse_retry_after({}) is None


async def test_instant_retries_makes_sleep_return_at_once() -> None:
    """Inside instant_retries() a long sleep completes without waiting."""
    with instant_retries():
        await asyncio.wait_for(sleep(3600), timeout=5)


async def test_instant_retries_nests_and_restores() -> None:
    """Leaving the outer block restores real sleeping."""
    with instant_retries():
        with instant_retries():
            pass
        await asyncio.wait_for(sleep(3600), timeout=5)
    task = asyncio.ensure_future(sleep(3600))
    for _ in range(5):  # an instant sleep would finish after one turn of the loop
        await asyncio.sleep(0)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_attempts_stop_at_the_attempt_cap() -> None:
    """The attempt iterator allows max_attempts attempts, then says why it gave up."""
    from xai_images._wire._retry import Attempts

    numbers: list[int] = []
    with instant_retries():
        async for attempt in Attempts(RetryPolicy(max_attempts=3), "GET /x"):
            numbers.append(attempt.number)
            if not attempt.retry(RuntimeError("boom")):
                break
    assert numbers == [1, 2, 3]
    assert attempt.gave_up == "after 3 attempts"


async def test_attempts_refuse_a_retry_after_over_the_cap() -> None:
    """A server-requested wait above max_retry_after ends the loop at once."""
    from xai_images._wire._retry import Attempts

    async for attempt in Attempts(RetryPolicy(max_retry_after=5.0), "GET /x"):
        assert not attempt.retry(RuntimeError("429"), retry_after=60.0)
        break
    assert attempt.gave_up is not None
    assert "60" in attempt.gave_up


async def test_attempts_respect_the_time_cap() -> None:
    """A backoff that would end past max_elapsed is not slept: the loop gives up."""
    from xai_images._wire._retry import Attempts

    policy = RetryPolicy(max_attempts=10, max_elapsed=1.0)
    async for attempt in Attempts(policy, "GET /x"):
        assert not attempt.retry(RuntimeError("503"), retry_after=2.0)
        break
    assert attempt.gave_up is not None
    assert "time cap" in attempt.gave_up


async def test_attempts_report_each_scheduled_retry() -> None:
    """on_retry hears the failed attempt, the delay, the error and the detail."""
    from xai_images._wire._retry import Attempts

    heard: list[tuple[int, float, str]] = []
    error = RuntimeError("boom")
    with instant_retries():
        async for attempt in Attempts(
            RetryPolicy(max_attempts=2),
            "GET /x",
            on_retry=lambda n, delay, err, detail: heard.append((n, delay, detail)),
        ):
            if not attempt.retry(error, retry_after=0.5, detail="503"):
                break
    assert heard == [(1, 0.5, "503")]
