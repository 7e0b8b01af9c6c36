"""``Resource``: the base of a client's endpoint groups (``client.images``, ``client.files``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._client import AsyncClient

__all__ = ["Resource"]


class Resource:
    """A group of endpoints of a client (``client.images``, ``client.files``)."""

    _label = "Resource"  # what the repr says before the client

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    def __repr__(self) -> str:
        return f"<{self._label} {self._client!r}>"
