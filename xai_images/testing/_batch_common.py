"""What the Batch and Files routes share: scripted replies, page tokens, limits, timestamps."""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from ._core import ServerCore

__all__ = [
    "decode_token",
    "encode_token",
    "format_time",
    "json_answer",
    "page_limit",
    "run_scripted",
]

Handler = Callable[[], Awaitable[web.StreamResponse]]


async def run_scripted(
    core: ServerCore, request: web.Request, route: str, run: Handler
) -> web.StreamResponse:
    """Check the key, then run ``run`` under the next scripted reply for ``route``.

    An error reply answers without running; a drop runs, then closes the connection; a hang
    runs, then waits before answering.
    """
    refusal = core.check_auth(request)
    if refusal is not None:
        return refusal
    script = core.next_batch_reply(route)
    if script is not None and script.kind == "error":
        return core.scripted_error(script)
    response = await run()
    if script is not None and script.kind == "drop":
        core.drop(request)
    if script is not None and script.kind == "hang":
        await asyncio.sleep(script.seconds or 0.0)
    return response


def encode_token(scope: str, offset: int) -> str:
    """An opaque page token for ``offset`` into the list named ``scope``."""
    raw = json.dumps({"s": scope, "o": offset}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, scope: str) -> int | None:
    """The offset a token from ``encode_token(scope, ...)`` holds, or ``None`` if it is not one."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError):
        return None
    if not isinstance(data, dict) or data.get("s") != scope:
        return None
    offset = data.get("o")
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        return None
    return offset


def page_limit(query: Mapping[str, str], *, default: int, maximum: int) -> int | str:
    """``limit`` (or the older ``page_size``) from a query, or why it is refused."""
    text = query.get("limit", query.get("page_size"))
    if text is None or text == "":
        return default
    try:
        limit = int(text)
    except ValueError:
        return f"limit: {text!r} is not an integer."
    if not 1 <= limit <= maximum:
        return f"limit: must be between 1 and {maximum}."
    return limit


def format_time(seconds: float | None, style: str) -> str | None:
    """An epoch time as RFC 3339 (``"rfc3339"``) or a bare ``YYYY-MM-DD`` (``"date"``)."""
    if seconds is None:
        return None
    moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    if style == "date":
        return moment.date().isoformat()
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def json_answer(body: Mapping[str, Any], status: int = 200) -> web.Response:
    """A JSON answer with an ``x-request-id`` header, like every API answer."""
    return web.json_response(dict(body), status=status, headers={"x-request-id": str(uuid.uuid4())})
