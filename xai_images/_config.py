"""Configuration values and the one set of validators they share.

``Timeout``, ``RetryPolicy`` and ``DownloadOptions`` live here, apart from the code that acts on
them. Every numeric argument of the package is checked by the predicates below, so that a value
means the same everywhere: a *positive number* is a finite real above 0 (``bool``, NaN and
infinity are not numbers here), a *count* is an ``int`` (never ``bool``, never ``2.5``). The attrs
validators raise ``ValueError`` naming the class and field; ``AsyncClient`` turns the same
predicates into ``ConfigurationError`` for its own arguments.

This module is at the bottom of the package: it imports nothing from it.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable
from typing import Any

import attrs
from yarl import URL

from ._errors import ConfigurationError

__all__ = [
    "DEFAULT_MAX_ANSWER_BYTES",
    "FAKE_SERVER_PORT",
    "DownloadOptions",
    "RetryPolicy",
    "Timeout",
    "check_base_url",
    "coerce_timeout",
    "connect_hint",
    "find_api_key",
    "int_at_least",
    "missing_key_error",
    "non_negative",
    "not_found_hint",
    "positive_number",
    "valid_count",
    "valid_non_negative",
    "valid_positive",
]

DEFAULT_MAX_ANSWER_BYTES = 128 * 1024 * 1024
"""Default cap on one API answer, counted after decompression (``AsyncClient(max_answer_bytes=)``).

The largest legitimate answer is ten images (``n`` is at most 10) as ``b64_json``. A 2048x2048
image is about 1-2 MB as JPEG (what the API returns) and at most about 8 MB as a photographic
PNG; as base64 (4/3 of the bytes) ten of those are 10 x 8 MB x 4/3 = 107 MB, plus a few KB of
JSON. 128 MiB (134 MB) stays above that with room to spare, while a compression bomb or a
runaway answer is stopped long before it can exhaust memory.
"""


FAKE_SERVER_PORT = 8000
"""The port ``python -m xai_images.testing`` listens on unless told otherwise."""


def find_api_key(api_key: str | None) -> str | None:
    """The API key to use: ``api_key``, else ``$XAI_API_KEY``; ``None`` when neither holds one
    (blank counts as none)."""
    key = api_key if api_key is not None else os.environ.get("XAI_API_KEY")
    return key.strip() if key and key.strip() else None


def missing_key_error(owner: str) -> ConfigurationError:
    """The error for a client built without a key, naming the class the caller built."""
    return ConfigurationError(
        f"no API key: pass api_key= to {owner} or set the XAI_API_KEY environment variable "
        "(for the local fake server any non-empty key works)"
    )


def not_found_hint(base_url: str, path: str | None) -> str:
    """Advice for a 404 on one of the API's own paths when the base URL lacks ``/v1``."""
    root = URL(base_url)
    if path is None or "v1" in root.path.split("/") or path.startswith("/v1/"):
        return ""
    fixed = str(root.with_path(root.path.rstrip("/") + "/v1"))
    return (
        f". The base URL {base_url} has no /v1, where the xAI API's paths start: "
        f"try base_url={fixed!r} (XAI_BASE_URL={fixed})"
    )


def connect_hint(base_url: str) -> str:
    """Advice for a refused connection to the local fake server's usual address."""
    root = URL(base_url)
    if root.host not in ("127.0.0.1", "localhost", "::1") or root.port != FAKE_SERVER_PORT:
        return ""
    return (
        f". Nothing listens on port {FAKE_SERVER_PORT}: to use the local fake API, start it "
        f"in another terminal with .venv/bin/python -m xai_images.testing --port "
        f"{FAKE_SERVER_PORT}"
    )


def positive_number(value: object) -> bool:
    """A finite real number above 0 (``bool``, NaN and infinity are not)."""
    return (
        not isinstance(value, bool)
        and isinstance(value, (int, float))
        and math.isfinite(value)
        and value > 0
    )


def non_negative(value: object) -> bool:
    """A finite real number of at least 0 (``bool``, NaN and infinity are not)."""
    return (
        not isinstance(value, bool)
        and isinstance(value, (int, float))
        and math.isfinite(value)
        and value >= 0
    )


def int_at_least(value: object, minimum: int) -> bool:
    """An ``int`` (not ``bool``, not a float such as ``2.5`` or ``2.0``) of at least ``minimum``."""
    return not isinstance(value, bool) and isinstance(value, int) and value >= minimum


_Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


def _owner(inst: object) -> str:
    return type(inst).__name__


def valid_positive(*, optional: bool = False) -> _Validator:
    """An attrs validator: a positive finite number (or ``None`` when ``optional``)."""

    def check(inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if optional and value is None:
            return
        if not positive_number(value):
            extra = " or None" if optional else ""
            raise ValueError(
                f"{_owner(inst)}.{attribute.name} must be a positive finite number{extra} "
                f"(> 0), got {value!r}"
            )

    return check


def valid_count(minimum: int) -> _Validator:
    """An attrs validator: an ``int`` (not ``bool``) at least ``minimum``."""

    def check(inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if not int_at_least(value, minimum):
            raise ValueError(
                f"{_owner(inst)}.{attribute.name} must be an int >= {minimum}, got {value!r}"
            )

    return check


def valid_non_negative(inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """An attrs validator: a finite number >= 0."""
    if not non_negative(value):
        raise ValueError(
            f"{_owner(inst)}.{attribute.name} must be a finite number >= 0, got {value!r}"
        )


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

    max_attempts: int = attrs.field(default=3, validator=valid_count(1))
    max_elapsed: float | None = attrs.field(default=180.0, validator=valid_positive(optional=True))
    initial_backoff: float = attrs.field(default=0.5, validator=valid_non_negative)
    max_backoff: float = attrs.field(default=8.0, validator=valid_non_negative)
    max_retry_after: float = attrs.field(default=60.0, validator=valid_non_negative)
    retry_unknown_outcome: bool = False

    def backoff_cap(self, attempt: int) -> float:
        """The jitter upper bound after failed attempt number ``attempt`` (1-based)."""
        exponent = min(max(attempt - 1, 0), 62)
        return float(min(self.max_backoff, self.initial_backoff * (2**exponent)))

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based) before the next one.

        A server-requested ``retry_after`` is honoured exactly (never shortened; the caller
        checks it against `max_retry_after` first); otherwise the wait is a full-jitter
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
        if not int_at_least(max_retries, 0):
            raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")
        return attrs.evolve(self, max_attempts=max_retries + 1)


@attrs.frozen
class Timeout:
    """Time limits of one API request attempt, in seconds (``None``: no limit).

    Attributes:
        request: the whole exchange, generation included (image generation can take minutes),
            from connecting to the last byte of the answer. Default 600.
        connect: opening the TCP/TLS connection. Default 10. A connect timeout is retried
            (nothing was sent); a request timeout after sending raises ``OutcomeUnknownError``.
    """

    request: float | None = attrs.field(default=600.0, validator=valid_positive(optional=True))
    connect: float | None = attrs.field(default=10.0, validator=valid_positive(optional=True))


def coerce_timeout(value: Timeout | float | None, base: Timeout) -> Timeout:
    """``value`` as a `Timeout`: ``None`` is ``base``, a number replaces its ``request``.

    Raises:
        TypeError: ``value`` is neither a Timeout, a number nor ``None``.
    """
    if value is None:
        return base
    if isinstance(value, Timeout):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"timeout must be a Timeout, a number of seconds or None, not {value!r}")
    return attrs.evolve(base, request=float(value))


def _download_retry() -> RetryPolicy:
    return RetryPolicy(max_attempts=5, max_elapsed=300.0, max_backoff=4.0)


@attrs.frozen
class DownloadOptions:
    """How images are downloaded and saved (one per client: ``AsyncClient(download=...)``).

    Attributes:
        concurrency: downloads and writes in flight at once across the whole client (a
            semaphore); ``save_all(concurrency=k)`` may lower it for one call.
        chunk_size: bytes read from the socket per step. Downloaded bytes are written to disk
            in batches of ``max(chunk_size, 1 MiB)`` (an image up to that size in a single
            write); peak memory is about ``concurrency * (1 MiB + 2 * chunk_size)``.
        retry: attempts, backoff and time cap for downloads (GETs are always safe to retry).
        connect_timeout: seconds to open a connection to the image host.
        stall_timeout: seconds without a single byte (before or during the body) after which
            the attempt is aborted and retried, resuming where possible.
        min_speed: bytes per second, averaged over ``speed_window``, below which an attempt
            counts as stalled and is retried (``None``: no minimum).
        speed_window: seconds over which ``min_speed`` is measured.
        fsync: flush each file (and its directory entry) to the disk before reporting it saved;
            slower, but survives a power loss.

    Raises:
        ValueError: a field is out of range (counts are ints >= 1, times and speeds positive
            finite numbers).
    """

    concurrency: int = attrs.field(default=16, validator=valid_count(1))
    chunk_size: int = attrs.field(default=256 * 1024, validator=valid_count(1))
    retry: RetryPolicy = attrs.field(
        factory=_download_retry, validator=attrs.validators.instance_of(RetryPolicy)
    )
    connect_timeout: float = attrs.field(default=10.0, validator=valid_positive())
    stall_timeout: float = attrs.field(default=15.0, validator=valid_positive())
    min_speed: float | None = attrs.field(default=None, validator=valid_positive(optional=True))
    speed_window: float = attrs.field(default=5.0, validator=valid_positive())
    fsync: bool = False


def check_base_url(raw: str) -> str:
    """``raw`` as an http(s) URL without a trailing slash.

    Raises:
        ConfigurationError: not an http(s) URL with a host.
    """
    try:
        url = URL(raw.strip())
    except (TypeError, ValueError):
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(
            f"base_url must be an http(s) URL such as https://api.x.ai/v1, got {raw!r}"
        )
    return str(url).rstrip("/")
