"""The one retry loop: an attempt iterator driven by ``RetryPolicy``; ``Retry-After`` parsing.

Every retrying caller (the API request path in ``_api/_requester.py``, the image fetch in
``_results/_fetch.py``) iterates the same loop, so the caps (attempts and time), the jitter,
``Retry-After`` and the DEBUG log lines are written once::

    async for attempt in Attempts(policy, "POST /v1/images/generations"):
        try:
            return await send()
        except SomeFailure as error:
            if not attempt.retry(error, detail="503"):
                raise

Which failures are worth retrying is decided by the caller (it knows whether a request may
have been paid for); this module only decides whether the policy still allows one more attempt
and how long to wait before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping

from .._config import RetryPolicy

__all__ = ["Attempt", "Attempts", "RetryPolicy", "instant_retries", "parse_retry_after", "sleep"]

_logger = logging.getLogger("xai_images")

OnRetry = Callable[[int, float, BaseException, str], None]
"""Called once per scheduled retry with the failed attempt's number, the delay, the error and
the caller's short description of it."""


class Attempt:
    """One attempt of an `Attempts` loop.

    Attributes:
        number: 1 for the first attempt.
        gave_up: after `retry` returned ``False``: why, as a phrase that completes
            "failed ..." (e.g. ``"after 3 attempts"``).
    """

    __slots__ = ("_loop", "gave_up", "number")

    def __init__(self, loop: Attempts, number: int) -> None:
        self._loop = loop
        self.number = number
        self.gave_up: str | None = None

    def retry(
        self, error: BaseException, *, retry_after: float | None = None, detail: str = ""
    ) -> bool:
        """Schedule another attempt after ``error`` if the policy allows; ``False`` if not.

        The caps are checked in this order: a ``retry_after`` above ``max_retry_after`` (raised
        at once rather than slept), the attempt cap, the time cap (a wait that would end past
        ``max_elapsed`` is not slept). A scheduled retry is logged at DEBUG, reported to the
        loop's ``on_retry`` callback, and slept at the start of the next iteration.

        Args:
            retry_after: the server-requested wait, honoured exactly.
            detail: a short description of the failure for the log line (e.g. ``"503"``).
        """
        return self._loop._schedule(self, error, retry_after, detail)

    def give_up(self, error: BaseException, why: str, detail: str = "") -> None:
        """Log at DEBUG that ``error`` is not retried, and why (a rule of the caller)."""
        self.gave_up = why
        self._loop._log_give_up(error, why, detail)


class Attempts:
    """Iterate the attempts a `RetryPolicy` allows: ``async for attempt in Attempts(...)``.

    The first attempt starts at once; each further one only after `Attempt.retry`
    scheduled it, and after its delay. The loop ends (without raising) when an attempt was not
    followed by a scheduled retry: the caller returns or raises out of the loop itself.

    Args:
        policy: the caps and backoff.
        label: what is being attempted, for log lines (``"POST /v1/images/generations"``).
        on_retry: called for each scheduled retry (event hooks hang here).
    """

    def __init__(self, policy: RetryPolicy, label: str, *, on_retry: OnRetry | None = None) -> None:
        self.policy = policy
        self.label = label
        self._on_retry = on_retry
        self._started: float | None = None
        self._number = 0
        self._delay: float | None = None

    def __aiter__(self) -> Attempts:
        return self

    async def __anext__(self) -> Attempt:
        if self._started is None:
            self._started = asyncio.get_running_loop().time()
        elif self._delay is None:
            raise StopAsyncIteration
        else:
            delay, self._delay = self._delay, None
            await sleep(delay)
        self._number += 1
        return Attempt(self, self._number)

    def _schedule(
        self, attempt: Attempt, error: BaseException, retry_after: float | None, detail: str
    ) -> bool:
        policy = self.policy
        number = attempt.number
        if retry_after is not None and retry_after > policy.max_retry_after:
            attempt.give_up(
                error, f"(the server asked to wait {retry_after:g} s, over max_retry_after)", detail
            )
            return False
        if number >= policy.max_attempts:
            attempt.give_up(error, f"after {number} attempts", detail)
            return False
        delay = policy.delay(number, retry_after)
        assert self._started is not None
        elapsed = asyncio.get_running_loop().time() - self._started
        if policy.max_elapsed is not None and elapsed + delay > policy.max_elapsed:
            attempt.give_up(
                error, f"after {elapsed:.1f} s (the time cap is {policy.max_elapsed:g} s)", detail
            )
            return False
        self._delay = delay
        _logger.debug(
            "retrying %s in %.2f s (attempt %d of %d): %s",
            self.label,
            delay,
            number + 1,
            policy.max_attempts,
            detail or type(error).__name__,
            extra={
                "xai_event": "retry",
                "xai_status": getattr(error, "status_code", None),
                "xai_delay": delay,
                "xai_attempt": number + 1,
            },
        )
        if self._on_retry is not None:
            self._on_retry(number, delay, error, detail)
        return True

    def _log_give_up(self, error: BaseException, why: str, detail: str) -> None:
        _logger.debug(
            "not retrying %s: %s (%s)",
            self.label,
            why,
            detail or type(error).__name__,
            extra={"xai_event": "give_up", "xai_status": getattr(error, "status_code", None)},
        )


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
    """Sleep between retries (and between polls); returns at once inside `instant_retries`.

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
