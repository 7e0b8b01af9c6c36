"""Fake of the xAI image API for tests, benchmarks and demos.

``FakeXAIServer`` serves the generations, edits and deferred endpoints, the Batch API and the
Files API, plus an image host on 127.0.0.1, with switches for latency, scripted errors, dropped
connections, rate limits, moderation, expiring URLs and faulty downloads. ``FakeClock`` moves
the fake's time by hand (batch processing, URL expiry). ``instant_retries()`` makes every retry
backoff of the SDK return at once, so tests of retry paths run fast. ``sample_image()`` gives
real image bytes, e.g. as edit inputs. See ``docs/testing.md``.
"""

from .._public import publish
from .._wire._retry import instant_retries
from ._imagegen import sample_image
from ._ledger import Ledger, RecordedRequest
from ._prices import FakeModel
from ._replies import Reply
from ._server import FakeXAIServer
from ._settings import DEFAULT_API_KEY, FakeClock, FakeSettings

__all__ = [
    "DEFAULT_API_KEY",
    "FakeClock",
    "FakeModel",
    "FakeSettings",
    "FakeXAIServer",
    "Ledger",
    "RecordedRequest",
    "Reply",
    "instant_retries",
    "sample_image",
]

publish(__name__, globals())
