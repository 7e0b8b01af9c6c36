"""Spending ledgers in USD ticks: one per process (`LocalLedger`) or shared on Redis.

A ledger holds one number against a limit: what was spent plus what is reserved for requests
in flight. ``reserve(ticks)`` adds to it only if the sum stays within the limit (atomically: on
Redis one Lua script); ``settle(reserved, actual)`` replaces a reservation by the actual cost;
``release(reserved)`` gives it back (the request was provably not run).

The shared ledger's key is ``xai-images:spend:`` plus the first 16 hex digits of the SHA-256 of
the API key and the budget's name: processes and shards of one job meet there; the API key
itself never reaches Redis. It lives as long as the job is resumed (30 days after its last use).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from .._errors import ConfigurationError, SharedLimitError
from ._shared_limit import redact_url

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["LocalLedger", "SharedLedger", "SpendLedger", "spend_key"]

_logger = logging.getLogger("xai_images")

KEY_PREFIX = "xai-images:spend:"
_RECONNECT_FIRST = 0.1
_RECONNECT_MAX = 2.0
_TTL_SECONDS = 30 * 86400

# KEYS[1]: the committed ticks (spent + reserved). ARGV: ticks to add, the limit, ttl seconds.
# Adds only when the sum stays within the limit; returns {granted (0/1), committed after}.
_RESERVE = """
local committed = tonumber(redis.call('GET', KEYS[1]) or '0')
local add = tonumber(ARGV[1])
if committed + add > tonumber(ARGV[2]) then
  return {0, committed}
end
committed = redis.call('INCRBY', KEYS[1], add)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return {1, committed}
"""


class SpendLedger(Protocol):
    """Ticks committed against a limit (spent plus reserved)."""

    async def reserve(self, ticks: int, limit: int, *, wait: bool = True) -> bool:
        """Add ``ticks`` if the total stays within ``limit``; ``False`` (nothing added) if not.
        ``wait``: a ledger that can may first wait for reservations in flight to settle."""
        ...

    async def settle(self, reserved: int, actual: int) -> None:
        """Replace a reservation of ``reserved`` ticks by the ``actual`` cost."""
        ...

    async def release(self, reserved: int) -> None:
        """Give back a reservation (the request was not run)."""
        ...

    async def committed(self) -> int:
        """Spent plus reserved, in ticks."""
        ...


def spend_key(api_key: str, name: str) -> str:
    """The Redis key of the budget ``name`` of ``api_key`` (hashed: no secret in Redis)."""
    digest = hashlib.sha256(f"{api_key}\0{name}".encode()).hexdigest()[:16]
    return KEY_PREFIX + digest


class LocalLedger:
    """The ledger of one process. A reservation that does not fit waits (unless told not to)
    while other reservations are outstanding (they may settle lower), and is refused when none
    is.

    Args:
        committed: ticks already spent (e.g. by earlier runs of the job).
    """

    def __init__(self, committed: int = 0) -> None:
        self._committed = committed
        self._outstanding = 0
        self._changed = asyncio.Condition()

    def __repr__(self) -> str:
        return f"<LocalLedger committed={self._committed} outstanding={self._outstanding}>"

    async def reserve(self, ticks: int, limit: int, *, wait: bool = True) -> bool:
        """See `SpendLedger.reserve`."""
        async with self._changed:
            while self._committed + ticks > limit:
                if not (wait and self._outstanding):
                    return False
                await self._changed.wait()
            self._committed += ticks
            self._outstanding += 1
            return True

    async def settle(self, reserved: int, actual: int) -> None:
        """See `SpendLedger.settle`."""
        async with self._changed:
            self._committed += actual - reserved
            self._outstanding -= 1
            self._changed.notify_all()

    async def release(self, reserved: int) -> None:
        """See `SpendLedger.release`."""
        await self.settle(reserved, 0)

    async def committed(self) -> int:
        """See `SpendLedger.committed`."""
        return self._committed


class SharedLedger:
    """The ledger of every process on one Redis key (`spend_key`); needs ``redis``.

    A reservation that does not fit is refused at once: other processes' reservations are not
    waited for.

    Args:
        url: ``redis://[:PASSWORD@]HOST:PORT/DB``.
        key: the Redis key (`spend_key`).

    Raises:
        ConfigurationError: the ``redis`` package is not installed.
    """

    def __init__(self, url: str, key: str) -> None:
        try:
            import redis.asyncio as aioredis
            from redis.exceptions import ConnectionError as RedisConnectionError
            from redis.exceptions import TimeoutError as RedisTimeoutError
        except ImportError:
            raise ConfigurationError(
                "a shared budget needs the redis package: pip install 'xai-images[shared]'"
            ) from None
        self._shown_url = redact_url(url)
        self._key = key
        self._redis: Redis = aioredis.Redis.from_url(
            url, socket_connect_timeout=3.0, socket_timeout=3.0
        )
        self._script = self._redis.register_script(_RESERVE)
        self._retried: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError)

    def __repr__(self) -> str:
        return f"<SharedLedger url={self._shown_url!r} key={self._key!r}>"

    async def _do(self, call: Callable[[], Awaitable[Any]]) -> Any:
        """Run one Redis call; while Redis is unreachable, wait and try again (as the shared
        rate limiter does): no request is sent meanwhile, and no spend is lost."""
        delay = _RECONNECT_FIRST
        while True:
            try:
                return await call()
            except (ConnectionError, OSError, TimeoutError) as exc:
                failure: Exception = exc
            except Exception as exc:
                if type(exc).__module__.split(".")[0] != "redis":
                    raise
                if not isinstance(exc, self._retried):
                    # redis errors may repeat the URL (and its password): name only the server.
                    raise SharedLimitError(
                        f"the shared budget at {self._shown_url} failed: {type(exc).__name__}"
                    ) from None
                failure = exc
            _logger.warning(
                "shared budget at %s unreachable (%s); retrying in %.1f s",
                self._shown_url,
                type(failure).__name__,
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RECONNECT_MAX)

    async def reserve(self, ticks: int, limit: int, *, wait: bool = True) -> bool:
        """See `SpendLedger.reserve` (never waits for other reservations)."""
        answer = await self._do(
            lambda: self._script(keys=[self._key], args=[ticks, limit, _TTL_SECONDS])
        )
        assert isinstance(answer, list)
        return bool(int(answer[0]))

    async def settle(self, reserved: int, actual: int) -> None:
        """See `SpendLedger.settle`."""
        if actual != reserved:
            await self._do(lambda: self._redis.incrby(self._key, actual - reserved))

    async def release(self, reserved: int) -> None:
        """See `SpendLedger.release`."""
        await self.settle(reserved, 0)

    async def committed(self) -> int:
        """See `SpendLedger.committed`."""
        value = await self._do(lambda: self._redis.get(self._key))
        return int(value) if isinstance(value, (bytes, str, int)) else 0

    async def seed(self, ticks: int) -> None:
        """Count ``ticks`` already spent if the key is new (the first process of a job)."""
        await self._do(lambda: self._redis.set(self._key, ticks, nx=True, ex=_TTL_SECONDS))

    async def aclose(self) -> None:
        """Close the Redis connection."""
        await self._redis.aclose()
