"""Token pagination, as the Batch and Files APIs do it.

A page is ``{<key>: [...], "pagination_token": ...}``; ``null``, ``""`` or no token means the last
page (the sources say both). A token seen twice or an empty page also ends the walk, so a server
that loops cannot hang the caller.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

if TYPE_CHECKING:
    from .._wire._transport import Answer
    from ._requester import Requester

__all__ = ["next_token", "pages", "query"]

_MAX_PAGES = 100_000  # a token that loops forever must not hang the caller


def next_token(body: Any) -> str | None:
    """The next page's token; ``null``, ``""`` or no token all mean the last page."""
    if not isinstance(body, Mapping):
        return None
    token = body.get("pagination_token", body.get("next_page_token"))
    if not isinstance(token, str) or not token:
        return None
    return token


def query(params: Mapping[str, object]) -> str:
    """``?a=1&b=2`` of the parameters that are set (``None`` ones are left out)."""
    present = {key: str(value) for key, value in params.items() if value is not None}
    return "?" + urlencode(present) if present else ""


async def pages(
    requester: Requester, path: str, key: str, params: Mapping[str, object]
) -> AsyncIterator[tuple[list[Any], Answer]]:
    """Each page's items (under ``key``, else ``data``) and its answer, first page first.

    Raises:
        APIResponseError: a page that is not an object with a list under ``key``.
    """
    token: str | None = None
    seen: set[str] = set()
    for _ in range(_MAX_PAGES):
        answer = await requester.send(
            "GET", path + query({**params, "pagination_token": token}), idempotent=True
        )
        body = answer.body
        items = body.get(key) if isinstance(body, Mapping) else None
        if items is None and isinstance(body, Mapping):
            items = body.get("data")
        if not isinstance(items, list):
            raise answer.invalid("GET", path, f"GET {path}: {key} is not a list")
        yield items, answer
        token = next_token(body)
        if token is None or token in seen or not items:
            return
        seen.add(token)
