"""The pytest plugin shipped with the package gives users a fake server and a client for it."""

from __future__ import annotations

import xai_images
from xai_images.testing import FakeXAIServer, Reply


async def test_fake_server_fixture_is_started(fake_xai_server: FakeXAIServer) -> None:
    """`fake_xai_server` is a running fake on loopback with an empty ledger."""
    assert fake_xai_server.base_url.startswith("http://127.0.0.1:")
    assert fake_xai_server.ledger.images_billed == 0


async def test_xai_client_fixture_talks_to_the_fake(
    xai_client: xai_images.AsyncClient, fake_xai_server: FakeXAIServer
) -> None:
    """`xai_client` is bound to the fake: a generation there is billed in its ledger."""
    resp = await xai_client.images.generate("a lighthouse", n=2)
    assert len(resp.data) == 2
    assert fake_xai_server.ledger.images_billed == 2


async def test_xai_client_fixture_retries_without_waiting(
    xai_client: xai_images.AsyncClient, fake_xai_server: FakeXAIServer
) -> None:
    """A 503 asking to wait 30 s is retried at once under the fixture's instant retries."""
    fake_xai_server.enqueue(Reply.error(503, retry_after="30"))
    resp = await xai_client.images.generate("a lighthouse")
    assert len(resp.data) == 1
    assert len(fake_xai_server.ledger.api_requests()) == 2
