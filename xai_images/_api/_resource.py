"""``Resource``: the base of a client's endpoint groups (``client.images``, ``client.files``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._requester import Requester

__all__ = ["Resource"]


class Resource:
    """A group of endpoints of a client (``client.images``, ``client.files``)."""

    _label = "Resource"  # what the repr says before the client

    def __init__(self, requester: Requester) -> None:
        self._requester = requester

    def __repr__(self) -> str:
        return f"<{self._label} {self._requester!r}>"
