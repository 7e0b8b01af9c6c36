"""API paths with ids encoded exactly once.

An id goes into a path through `segment` (every reserved character percent-encoded, ``/`` and
``:`` included), and the path reaches aiohttp through `api_url`, built with ``encoded=True``:
yarl would otherwise decode ``%3A`` back to ``:`` (a character allowed in a path), so that
``batches.cancel("team/batch:1")`` would send ``/v1/batches/team%2Fbatch:1:cancel``.
"""

from __future__ import annotations

from urllib.parse import quote

from yarl import URL

from .._errors import ValidationError

__all__ = ["api_url", "segment"]


def segment(value: object, field: str) -> str:
    """``value`` as one path segment, percent-encoded once (``team/batch:1`` ->
    ``team%2Fbatch%3A1``).

    Raises:
        ValidationError: ``value`` is not a non-empty string (naming ``field``).
    """
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(field, value, "a non-empty string")
    return quote(value, safe="")


def api_url(base_url: str, path: str) -> URL:
    """The URL of ``path`` (already encoded: built with `segment`, its query with
    ``urlencode``) under ``base_url`` (an encoded URL, as ``check_base_url`` returns it),
    taken as is."""
    return URL(base_url + path, encoded=True)
