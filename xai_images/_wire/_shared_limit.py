"""One requests-per-second budget shared by every process and machine on an API key, on Redis.

The API counts requests per key, so workers pacing themselves alone overshoot: four workers at
5 requests per second send 20. `SharedRateLimiter` keeps the schedule in Redis instead.
Every admission runs one Lua script on the Redis server, so it is atomic across processes and uses
one clock (the server's ``TIME``): the script hands out start slots spaced ``1 / rate`` apart (no
burst, an idle budget saves no credit), and keeps the slow-down after a 429 in the same record, so
a 429 seen by one worker slows all of them.

The record's key is ``xai-images:rl:`` plus the first 16 hex digits of the SHA-256 of the API key:
every process on one key meets there without configuration, and the key itself never reaches Redis.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import random
import time
from typing import TYPE_CHECKING

from yarl import URL

from .._errors import ConfigurationError, SharedLimitError
from .._readonly import ReadOnly
from ._ratelimit import LimiterFigures

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["SharedRateLimiter", "budget_key"]

_logger = logging.getLogger("xai_images")

KEY_PREFIX = "xai-images:rl:"

# A slot is only handed out when it starts within this many seconds; a caller further back in
# line is told when to ask again. This bounds the slots a killed worker leaves unused, and the
# quiet start that a lost record needs (see the script).
_HORIZON = 0.5
# A 429 halves the rate at most once per this many seconds, whichever worker reports it: the
# requests already in flight tend to get 429s as well.
_PENALTY_COOLDOWN = 1.0
# The record lives this long after its last use (then the next start pays the quiet start again).
_TTL_SECONDS = 600
# Answers whose timing maps the server clock onto the local one.
_OFFSET_SAMPLES = 64
# Reconnection backoff while Redis is unreachable during a run.
_RECONNECT_FIRST = 0.1
_RECONNECT_MAX = 2.0

# KEYS[1]: the budget record (a hash). ARGV: rate, margin, backoff, min_fraction, recovery (per s,
# as a fraction of rate), horizon_us, cooldown_us, ttl_ms, reserve (0/1), penalize (0/1),
# retry_after_us. Times are integer microseconds of the server clock. Returns
# {granted (0/1), wait_us, current_rate * 1000, now_us}: when granted, wait_us is the delay to the
# slot; otherwise it is when to ask again.
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local rate = tonumber(ARGV[1])
local margin = tonumber(ARGV[2])
local backoff = tonumber(ARGV[3])
local min_rate = rate * tonumber(ARGV[4])
local recovery = rate * tonumber(ARGV[5])
local horizon = tonumber(ARGV[6])
local cooldown = tonumber(ARGV[7])
local ttl = tonumber(ARGV[8])
local reserve = ARGV[9] == '1'
local penalize = ARGV[10] == '1'
local retry_after = tonumber(ARGV[11])

local s = redis.call('HMGET', KEYS[1], 'next', 'prate', 'pat', 'pause')
local prate = tonumber(s[2]) or rate
local pat = tonumber(s[3]) or -1e18
local pause = tonumber(s[4]) or 0

local function rate_at(ts)
  if prate >= rate then return rate end
  return math.min(rate, prate + recovery * math.max(0, ts - pat) / 1e6)
end
local function interval(r) return 1e6 / (r * (1 - margin)) end

local next_slot = tonumber(s[1])
if next_slot == nil then
  -- No record: first use, long idle, or Redis lost it (restart, eviction). In the last case
  -- slots up to the horizon may already be out, so the new schedule starts after them.
  next_slot = now + horizon + interval(rate_at(now))
end

if penalize then
  if now - pat >= cooldown then
    prate = math.max(min_rate, rate_at(now) * backoff)
    pat = now
    next_slot = math.max(next_slot, now + interval(prate))
  end
  if retry_after > 0 then pause = math.max(pause, now + retry_after) end
end

local granted = 0
local wait = 0
if reserve then
  local slot = math.max(now, next_slot, pause)
  if slot - now <= horizon then
    granted = 1
    wait = slot - now
    next_slot = slot + interval(rate_at(slot))
  else
    wait = slot - now - horizon
  end
end

redis.call('HSET', KEYS[1], 'next', string.format('%.0f', next_slot), 'prate', tostring(prate),
  'pat', string.format('%.0f', pat), 'pause', string.format('%.0f', pause))
local live = math.max(next_slot, pause) - now
redis.call('PEXPIRE', KEYS[1], ttl + math.max(0, math.floor(live / 1000)))
return {granted, math.floor(wait), math.floor(rate_at(now) * 1000), now}
"""


def budget_key(api_key: str) -> str:
    """The Redis key of an API key's budget: a prefix and a short hash, never the key itself."""
    return KEY_PREFIX + hashlib.sha256(api_key.encode()).hexdigest()[:16]


def redact_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``, for logs and errors."""
    try:
        parsed = URL(url)
    except (TypeError, ValueError):
        return "<unparseable URL>"
    if parsed.password is not None:
        parsed = parsed.with_password("***")
    return str(parsed)


def _scheme(url: str) -> str | None:
    try:
        return URL(url).scheme
    except (TypeError, ValueError):
        return None


class SharedRateLimiter(LimiterFigures):
    """Spaces request starts so that at most ``rate`` requests start in any second, summed over
    every process (on any machine) using the same API key and Redis server.

    A drop-in for `RateLimiter`: ``AsyncClient(rate_limit=5,
    shared_limit="redis://HOST:PORT/DB")`` builds one keyed by the client's API key and closes it
    with the client. It needs the ``redis`` package (``pip install 'xai-images[shared]'``).

    If Redis goes away during a run, `acquire` waits and reconnects with backoff (logging at
    WARNING, password redacted); it never lets a request start unpaced.

    Args:
        url: ``redis://[:PASSWORD@]HOST:PORT/DB`` (or ``rediss://`` for TLS).
        api_key: the API key whose budget this is; only a hash of it is sent to Redis.
        rate: the allowed requests per second for the key.
        margin: fraction kept in reserve against the jitter of starting requests from several
            processes; starts are spaced for ``rate * (1 - margin)`` per second.
        backoff: factor applied to the shared rate when any worker reports a 429.
        min_fraction: the shared rate never drops below ``rate * min_fraction``.
        recovery: after a 429, the shared rate grows back by ``rate * recovery`` per second.

    Raises:
        ConfigurationError: an argument is out of range, the URL is not a ``redis://`` URL, or
            the ``redis`` package is not installed.
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str,
        rate: float,
        margin: float = 0.03,
        backoff: float = 0.5,
        min_fraction: float = 0.1,
        recovery: float = 0.25,
    ) -> None:
        if not rate > 0:
            raise ConfigurationError(f"rate must be positive, got {rate!r}")
        if not 0 <= margin < 1:
            raise ConfigurationError(f"margin must be in [0, 1), got {margin!r}")
        if not 0 < backoff < 1:
            raise ConfigurationError(f"backoff must be in (0, 1), got {backoff!r}")
        if not 0 < min_fraction <= 1:
            raise ConfigurationError(f"min_fraction must be in (0, 1], got {min_fraction!r}")
        if not recovery > 0:
            raise ConfigurationError(f"recovery must be positive, got {recovery!r}")
        if not isinstance(url, str) or _scheme(url) not in ("redis", "rediss", "unix"):
            raise ConfigurationError(
                "shared_limit must be a Redis URL such as redis://127.0.0.1:6379/0, got "
                + (repr(redact_url(url)) if isinstance(url, str) else type(url).__name__)
            )
        try:
            import redis.asyncio as aioredis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
        except ImportError:
            raise ConfigurationError(
                "shared_limit needs the redis package: pip install 'xai-images[shared]'"
            ) from None
        self._shown_url = redact_url(url)
        self._key = budget_key(api_key)
        self._rate = float(rate)
        self._margin = margin
        # Evenly spaced at rate * (1 - margin), a 1 s window has about `margin` seconds to spare;
        # half of it may be spent starting late, the rest is left to the send path.
        self._late_tolerance = margin / 2
        self._args = (
            repr(self._rate),
            repr(margin),
            repr(backoff),
            repr(min_fraction),
            repr(recovery),
        )
        # Short timeouts: a dead server must surface as an error (then a reconnect), not a hang;
        # redis-py's own retries are off because the loop below retries with its own backoff.
        self._redis: Redis = aioredis.Redis.from_url(
            url, socket_connect_timeout=3.0, socket_timeout=3.0, retry=Retry(NoBackoff(), 0)
        )
        self._script = self._redis.register_script(_SCRIPT)
        self._started = False
        self._closed = False
        self._current_rate = self._rate
        self._rate_limited = 0
        # A 429 not yet recorded in Redis: (penalize, retry_after seconds). Sent by a background
        # flush right away, and again with the next admission if that flush failed.
        self._owed: float | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        # One caller per process asks Redis at a time; the rest queue here in order.
        self._lock = asyncio.Lock()
        # No local start before this (monotonic), from a Retry-After seen by this process.
        self._paused_until = -float("inf")
        self._offsets: collections.deque[float] = collections.deque(maxlen=_OFFSET_SAMPLES)
        self._late = 0
        self._outage = False

    def __repr__(self) -> str:
        return (
            f"SharedRateLimiter(url={self._shown_url!r}, key={self._key!r}, "
            f"rate={self._rate:g}, current_rate={self._current_rate:.3g})"
        )

    current_rate: ReadOnly[float] = ReadOnly("_current_rate")
    """The shared effective rate as of the last answer from Redis (lower after 429s)."""
    key: ReadOnly[str] = ReadOnly("_key")
    """The Redis key of the budget (derived from a hash of the API key)."""

    async def start(self) -> None:
        """Check that Redis answers; the client calls this when it is entered. Idempotent.

        Raises:
            SharedLimitError: Redis cannot be reached (the message names the URL, without its
                password).
        """
        if self._started:
            return
        from redis.exceptions import RedisError

        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            # Leave no half-open connection behind; the limiter stays usable for a later try.
            await self._redis.connection_pool.disconnect()
            raise SharedLimitError(
                f"cannot reach the Redis server of the shared rate limit at {self._shown_url}: "
                f"{type(exc).__name__}; start it or fix the URL (no request was sent)"
            ) from None
        self._started = True

    async def aclose(self) -> None:
        """Send any pending 429 report (briefly), then close the Redis connections. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._flushes:
            _done, pending = await asyncio.wait(self._flushes, timeout=1.0)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        await self._redis.aclose()

    async def _call(self, *, reserve: bool) -> tuple[bool, float]:
        """Run the script once (with any owed 429 report).

        Returns (granted, at): when granted, the slot on the local ``time.monotonic()`` clock;
        otherwise the local time to ask again.
        """
        owed, self._owed = self._owed, None
        try:
            granted, wait_us, rate_milli, server_now = await self._script(
                keys=[self._key],
                args=[
                    *self._args,
                    str(int(_HORIZON * 1e6)),
                    str(int(_PENALTY_COOLDOWN * 1e6)),
                    str(_TTL_SECONDS * 1000),
                    "1" if reserve else "0",
                    "1" if owed is not None else "0",
                    str(int((owed or 0.0) * 1e6)),
                ],
            )
        except BaseException:
            if owed is not None:
                self._owe(owed)
            raise
        received = time.monotonic()
        self._current_rate = int(rate_milli) / 1000
        # Slots are in the Redis server's clock. The smallest recent (local arrival - server
        # time) maps them to the local monotonic clock (which never steps): an answer that sat
        # in a busy process's socket buffer would otherwise make its slot look later than it is.
        self._offsets.append(received - int(server_now) / 1e6)
        return bool(granted), int(server_now) / 1e6 + int(wait_us) / 1e6 + min(self._offsets)

    async def _call_until_answered(self, *, reserve: bool) -> tuple[bool, float]:
        """`_call`, waiting and reconnecting with backoff while Redis is unreachable."""
        from redis.exceptions import RedisError

        delay = _RECONNECT_FIRST
        while True:
            try:
                result = await self._call(reserve=reserve)
            # Any Redis failure (connection lost, timeout, a replica that became read-only, a
            # server still loading) is waited out: sending unpaced is never the fallback.
            except (RedisError, OSError) as exc:
                if not self._outage:
                    self._outage = True
                    _logger.warning(
                        "shared rate limit: Redis at %s unreachable (%s); requests wait until "
                        "it answers again",
                        self._shown_url,
                        type(exc).__name__,
                    )
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(_RECONNECT_MAX, delay * 2)
                continue
            if self._outage:
                self._outage = False
                _logger.warning("shared rate limit: Redis at %s is back", self._shown_url)
            return result

    async def acquire(self) -> None:
        """Wait for this request's start slot in the shared schedule.

        Raises:
            SharedLimitError: Redis could not be reached on first use.
        """
        await self.start()
        while True:
            async with self._lock:
                while True:
                    granted, at = await self._call_until_answered(reserve=True)
                    if granted:
                        break
                    await asyncio.sleep(max(0.0, at - time.monotonic()))
            delay = at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            late = time.monotonic() - at
            # A start later than its slot by more than the margin's slack would sit too close
            # to the starts scheduled after it: the slot is given up and a new one taken.
            # A 429 with Retry-After seen here while waiting moves the start past the pause
            # too (the slot is given up, never used early).
            if late > self._late_tolerance:
                self._late += 1
                _logger.debug(
                    "shared rate limit: woke %.0f ms after the slot; retaking", late * 1e3
                )
            elif self._paused_until <= at:
                return

    def _owe(self, retry_after: float) -> None:
        self._owed = retry_after if self._owed is None else max(self._owed, retry_after)

    def on_rate_limited(self, retry_after: float | None) -> None:
        """Report a 429: the shared rate drops for every process on the key, then recovers.

        The report is sent to Redis in the background (this method does not block); if Redis is
        unreachable it goes with the next admission.
        """
        self._rate_limited += 1
        seconds = retry_after if retry_after is not None and retry_after > 0 else 0.0
        if seconds:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)
        self._owe(seconds)
        if self._closed:
            return
        task = asyncio.get_running_loop().create_task(self._flush())
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush(self) -> None:
        if self._owed is None:
            return
        await self._call_until_answered(reserve=False)
