"""The pytest plugin shipped with the package gives users a fake server and a client for it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

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


@pytest.mark.parametrize("fake_xai_server_options", [{"image_bytes": 512, "api_key": "xai-k-1"}])
async def test_server_options_fixture_configures_the_fake(
    fake_xai_server: FakeXAIServer, xai_client: xai_images.AsyncClient
) -> None:
    """`fake_xai_server_options` reaches the fake; `xai_client` follows its key."""
    assert fake_xai_server.settings.image_bytes == 512
    assert fake_xai_server.api_key == "xai-k-1"
    resp = await xai_client.images.generate("a lighthouse")
    assert len(resp.data) == 1


@pytest.mark.parametrize("xai_client_options", [{"max_retries": 0}])
async def test_client_options_fixture_configures_the_client(
    xai_client: xai_images.AsyncClient, fake_xai_server: FakeXAIServer
) -> None:
    """`xai_client_options` reaches the client: with no retries a 503 is raised at once."""
    fake_xai_server.enqueue(Reply.error(503))
    with pytest.raises(xai_images.InternalServerError):
        await xai_client.images.generate("a lighthouse")
    assert len(fake_xai_server.ledger.api_requests()) == 1


async def test_server_factory_starts_independent_fakes(
    fake_xai_server_factory: Callable[..., Awaitable[FakeXAIServer]],
) -> None:
    """Each server from `fake_xai_server_factory` runs on its own port with its own settings."""
    first = await fake_xai_server_factory(image_bytes=512)
    second = await fake_xai_server_factory(image_format="jpeg")
    assert first.port != second.port
    assert (first.settings.image_bytes, second.settings.image_format) == (512, "jpeg")
