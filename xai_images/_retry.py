"""Retry policy, backoff with jitter, ``Retry-After`` parsing and a switch for tests.

Everything here is general (no API-specific rules) so that the API request path and the download
layer share it. Which failures are retried is decided by the caller of :meth:`RetryPolicy.delay`.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import math
import random
import time
from collections.abc import Iterator, Mapping
from typing import Any

import attrs

__all__ = ["RetryPolicy", "instant_retries", "parse_retry_after", "sleep"]


def _positive_or_none(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not (isinstance(value, (int, float)) and value > 0):
        raise ValueError(f"{attribute.name} must be a positive number or None, got {value!r}")


def _non_negative(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not (isinstance(value, (int, float)) and value >= 0):
        raise ValueError(f"{attribute.name} must be a number >= 0, got {value!r}")


def _at_least_one(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be an int >= 1, got {value!r}")


@attrs.frozen
class RetryPolicy:
    """How often and how long to retry, and how long to wait in between.

    Attributes:
        max_attempts: attempts in total, the first one included (``AsyncClient(max_retries=2)``
            means 3 attempts).
        max_elapsed: seconds since the first attempt began after which no new attempt starts
            (``None``: no time cap). A backoff that would end past it is not slept.
        initial_backoff: the backoff cap of the first retry; it doubles per retry.
        max_backoff: the largest backoff cap. The actual wait is drawn uniformly between 0 and
            the cap ("full jitter"), so that many clients retrying at once spread out.
        max_retry_after: the longest server-requested wait (``Retry-After``) that is slept;
            a longer one is raised to the caller at once (e.g. as ``RateLimitError`` carrying
            ``retry_after``) instead of sleeping for minutes.
        retry_unknown_outcome: also retry requests whose answer was lost after they were sent
            (``OutcomeUnknownError``). Off by default: for a generation that can pay twice.

    Raises:
        ValueError: a field is out of range.
    """

    max_attempts: int = attrs.field(default=3, validator=_at_least_one)
    max_elapsed: float | None = attrs.field(default=180.0, validator=_positive_or_none)
    initial_backoff: float = attrs.field(default=0.5, validator=_non_negative)
    max_backoff: float = attrs.field(default=8.0, validator=_non_negative)
    max_retry_after: float = attrs.field(default=60.0, validator=_non_negative)
    retry_unknown_outcome: bool = False

    def backoff_cap(self, attempt: int) -> float:
        """The jitter upper bound after failed attempt number ``attempt`` (1-based)."""
        exponent = min(max(attempt - 1, 0), 62)
        return float(min(self.max_backoff, self.initial_backoff * (2**exponent)))

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based) before the next one.

        A server-requested ``retry_after`` is honoured exactly (never shortened; the caller
        checks it against :attr:`max_retry_after` first); otherwise the wait is a full-jitter
        exponential backoff.
        """
        if retry_after is not None:
            return max(0.0, retry_after)
        return random.uniform(0.0, self.backoff_cap(attempt))

    def with_attempts(self, max_retries: int | None) -> RetryPolicy:
        """This policy with ``max_attempts = max_retries + 1`` (``None``: unchanged).

        Raises:
            ValueError: ``max_retries`` is negative or not an int.
        """
        if max_retries is None:
            return self
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")
        return attrs.evolve(self, max_attempts=max_retries + 1)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    # Plain dicts are case-sensitive; aiohttp's header mappings are not.
    lowered = name.lower()
    for key, item in headers.items():
        if key.lower() == lowered:
            return item
    return None


def _finite_seconds(text: str, scale: float = 1.0) -> float | None:
    try:
        value = float(text.strip()) * scale
    except ValueError:
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return value


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asked to wait, from ``retry-after-ms`` or ``Retry-After``.

    ``retry-after-ms`` (milliseconds) wins when present and valid; ``Retry-After`` may be a
    number of seconds (a fraction is accepted) or an HTTP date (the wait is the time until that
    date, at least 0). Returns ``None`` when neither header is present or readable.
    """
    millis = _header(headers, "retry-after-ms")
    if millis is not None:
        value = _finite_seconds(millis, 0.001)
        if value is not None:
            return value
    raw = _header(headers, "retry-after")
    if raw is None:
        return None
    value = _finite_seconds(raw)
    if value is not None:
        return value
    try:
        when = email.utils.parsedate_to_datetime(raw.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


_instant_depth = 0


async def sleep(seconds: float) -> None:
    """Sleep between retries (and between polls); returns at once inside :func:`instant_retries`.

    Even when instant it yields to the event loop once, so that retry loops stay cooperative.
    """
    if _instant_depth > 0 or seconds <= 0:
        await asyncio.sleep(0)
        return
    await asyncio.sleep(seconds)


@contextlib.contextmanager
def instant_retries() -> Iterator[None]:
    """Make every retry backoff and deferred-poll wait of xai-images return at once.

    Meant for tests of code that uses xai-images: retries still happen, in the same order and
    with the same attempt caps, without waiting. Applies process-wide while the ``with`` block
    runs (nesting is fine). Time caps (``max_elapsed``, deadlines) still use the real clock.
    """
    global _instant_depth
    _instant_depth += 1
    try:
        yield
    finally:
        _instant_depth -= 1
