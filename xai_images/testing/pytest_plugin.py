"""pytest plugin: fixtures for testing code that uses xai-images.

Installed with the package (a ``pytest11`` entry point), so no ``conftest.py`` is needed::

    async def test_my_code(fake_xai_server):
        client = xai_images.AsyncClient(
            api_key=fake_xai_server.api_key, base_url=fake_xai_server.base_url
        )
        ...
        assert fake_xai_server.ledger.images_billed == 1

``xai_client`` is an :class:`~xai_images.AsyncClient` already pointed at that server, with
retry backoff switched off (``instant_retries()``).

``fake_xai_server`` is a started :class:`~xai_images.testing.FakeXAIServer` (function scope; its
switches are fresh for every test). It needs ``pytest-asyncio``; without it the plugin defines
nothing, so it never breaks a test run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

__all__: list[str] = []

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - depends on the user's environment
    pass
else:
    from .._client import AsyncClient
    from .._retry import instant_retries
    from ._server import FakeXAIServer

    @pytest_asyncio.fixture
    async def fake_xai_server() -> AsyncIterator[FakeXAIServer]:
        """A started ``FakeXAIServer`` on 127.0.0.1 with default settings, stopped afterwards."""
        async with FakeXAIServer() as server:
            yield server

    @pytest_asyncio.fixture
    async def xai_client(fake_xai_server: FakeXAIServer) -> AsyncIterator[AsyncClient]:
        """An ``AsyncClient`` talking to ``fake_xai_server``, retrying without sleeping."""
        with instant_retries():
            async with AsyncClient(
                api_key=fake_xai_server.api_key, base_url=fake_xai_server.base_url
            ) as client:
                yield client

    __all__ += ["fake_xai_server", "xai_client"]
