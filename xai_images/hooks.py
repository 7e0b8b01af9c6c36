"""Event hooks: what the client does on the wire, as events you can subscribe to.

Attach a callback with ``AsyncClient(event_hooks=[callback])`` or
``client.add_event_hook(callback)``; it receives one event object per occurrence:
`RequestSent`, `ResponseReceived`, `RetryScheduled`, `RateLimited`,
`DownloadRetry` and `CostReported`. ``EventHook`` is the callback type
(``Callable[[Event], None]``) and ``Event`` the union of the event classes. Callbacks run on the
event loop, synchronously: keep them quick. A callback that raises is logged and ignored, so an
observer's bug never turns a paid success into a failure.
"""

from ._hooks import (
    CostReported,
    DownloadRetry,
    Event,
    EventHook,
    RateLimited,
    RequestSent,
    ResponseReceived,
    RetryScheduled,
)
from ._public import publish

__all__ = [
    "CostReported",
    "DownloadRetry",
    "Event",
    "EventHook",
    "RateLimited",
    "RequestSent",
    "ResponseReceived",
    "RetryScheduled",
]

publish(__name__, globals())
