"""Fake of the xAI image API for tests, benchmarks and demos.

``FakeXAIServer`` serves the generations, edits and deferred endpoints plus an image host on
127.0.0.1, with switches for latency, scripted errors, dropped connections, rate limits,
moderation, expiring URLs and faulty downloads. ``instant_retries()`` makes every retry
backoff of the SDK return at once, so tests of retry paths run fast. See ``docs/testing.md``.
"""

from .._public import publish
from .._retry import instant_retries
from ._server import DEFAULT_API_KEY, FakeSettings, FakeXAIServer, Ledger, RecordedRequest, Reply

__all__ = [
    "DEFAULT_API_KEY",
    "FakeSettings",
    "FakeXAIServer",
    "Ledger",
    "RecordedRequest",
    "Reply",
    "instant_retries",
]

publish(__name__, globals())
