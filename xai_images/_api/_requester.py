"""``Requester``: the narrow interface a client lends to its resources.

Resources (``client.images``, ``client.batches``, ``client.files``) and the models they build
need three things of a client, and only these: send one API request through the client's
request path (its limits, retries, never-pay-twice rule and hooks), the client's `Transfers`
(saving and streaming images), and its `Hooks`. The client builds one `Requester` and hands it
to each resource, so no resource reaches into the client and nothing below the client imports
it. A test can build a `Requester` around a fake ``send``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import attrs

if TYPE_CHECKING:
    from .._config import Timeout
    from .._hooks import Hooks
    from .._results._transfers import Transfers
    from .._wire._transport import Answer

__all__ = ["Requester", "Send"]


class Send(Protocol):
    """Send one API request with the client's retries and return the 2xx answer.

    ``idempotent`` requests (polls) are also retried when the answer was lost after sending;
    paid ones only with ``RetryPolicy(retry_unknown_outcome=True)``; ``reconciled`` ones never,
    nor after a 5xx (their caller checks). ``content``: a raw body and its content type.
    """

    def __call__(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        timeout: Timeout | float | None = None,
        max_retries: int | None = None,
        idempotent: bool = False,
        origin: object = None,
        content: tuple[bytes, str] | None = None,
        reconciled: bool = False,
    ) -> Awaitable[Answer]: ...


@attrs.frozen(repr=False)
class Requester:
    """What a resource may use of its client.

    Attributes:
        send: the client's request path (see `Send`).
        transfers: the client's `Transfers`, given to the models it builds.
        hooks: the client's event hooks.
        owner: the client, for reprs only (``<Images of <AsyncClient ...>>``).
    """

    send: Send
    transfers: Transfers
    hooks: Hooks
    owner: object = None

    def __repr__(self) -> str:
        return repr(self.owner)
