"""Scripted answers (``Reply``) for the fake server's next API calls and downloads."""

from __future__ import annotations

import math
from typing import Any

import attrs

__all__ = ["API_KINDS", "DOWNLOAD_KINDS", "Reply"]


@attrs.frozen
class Reply:
    """A scripted answer for the next API POST (``enqueue``) or download (``enqueue_download``).

    Build one with the class methods: ``Reply.error(...)``, ``Reply.drop()``, ``Reply.hang(s)``,
    ``Reply.ok()`` for API requests; ``Reply.error(...)``, ``Reply.truncate()``, ``Reply.stall()``,
    ``Reply.drop()``, ``Reply.ok()`` for downloads.
    """

    kind: str
    status: int = 200
    retry_after: str | None = None
    retry_after_ms: int | None = None
    body: dict[str, Any] | None = None
    headers: dict[str, str] | None = None
    seconds: float | None = None
    fraction: float = 0.5
    abort: bool = False
    size: int = 0

    @classmethod
    def error(
        cls,
        status: int,
        *,
        retry_after: str | float | None = None,
        retry_after_ms: int | None = None,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """Answer ``status`` with an error body (not billed).

        Args:
            retry_after: ``Retry-After`` header value: seconds (``"2"``) or an HTTP date; a
                number is sent as integer seconds.
            retry_after_ms: ``retry-after-ms`` header value.
            body: replaces the default error body (in the configured error shape).
            headers: extra response headers.
        """
        if isinstance(retry_after, (int, float)):
            retry_after = str(math.ceil(retry_after))
        return cls(
            "error",
            status=status,
            retry_after=retry_after,
            retry_after_ms=retry_after_ms,
            body=body,
            headers=dict(headers) if headers else None,
        )

    @classmethod
    def drop(cls) -> Reply:
        """API: bill the images, then close the connection without an answer. Download: the
        same, nothing counted.

        aiohttp's client resends an idempotent request (a download GET) once by itself when the
        connection drops before any answer: enqueue two drops to make a download fail.
        """
        return cls("drop")

    @classmethod
    def hang(cls, seconds: float) -> Reply:
        """API: bill, then wait ``seconds`` before answering normally (to provoke timeouts)."""
        return cls("hang", seconds=seconds)

    @classmethod
    def ok(cls, *, headers: dict[str, str] | None = None) -> Reply:
        """Pass the request through normally (keeps a place in the queue).

        Args:
            headers: response headers to add or replace on the 200 answer (e.g. a hostile
                ``x-request-id``).
        """
        return cls("ok", headers=dict(headers) if headers else None)

    @classmethod
    def bomb(cls, size: int = 1 << 30) -> Reply:
        """API: bill, then answer 200 with ``Content-Encoding: gzip``: a valid JSON answer of
        ``size`` bytes once decompressed (padded with zeros), a few hundred KB on the wire."""
        return cls("bomb", size=size)

    @classmethod
    def huge(cls, size: int, *, announce: bool = True) -> Reply:
        """API: bill, then answer 200 with a valid JSON answer of ``size`` bytes, streamed
        (one long string field beside ``data``); with a ``Content-Length`` when ``announce``,
        else chunked."""
        return cls("huge", size=size, abort=not announce)

    @classmethod
    def truncate(cls, fraction: float = 0.5) -> Reply:
        """Download: announce the full Content-Length, send ``fraction`` of it, then disconnect."""
        return cls("truncate", fraction=fraction)

    @classmethod
    def stall(
        cls, fraction: float = 0.5, seconds: float | None = None, *, abort: bool = False
    ) -> Reply:
        """Download: send ``fraction`` of the body, pause ``seconds`` (default
        ``settings.stall_seconds``), then send the rest, or disconnect when ``abort``."""
        return cls("stall", fraction=fraction, seconds=seconds, abort=abort)


API_KINDS = frozenset({"error", "drop", "hang", "ok", "bomb", "huge"})
DOWNLOAD_KINDS = frozenset({"error", "truncate", "stall", "drop", "ok"})
