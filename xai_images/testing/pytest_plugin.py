"""pytest plugin: fixtures for testing code that uses xai-images.

Installed with the package (a ``pytest11`` entry point), so no ``conftest.py`` is needed::

    async def test_my_code(xai_client, fake_xai_server):
        response = await xai_client.images.generate("A red fox")
        ...
        assert fake_xai_server.ledger.images_billed == 1

- ``fake_xai_server``: a started `xai_images.testing.FakeXAIServer` (function scope; its
  switches are fresh for every test), built from ``fake_xai_server_options``.
- ``xai_client``: an `xai_images.AsyncClient` pointed at that server, with retry backoff
  switched off (``instant_retries()``), built with ``xai_client_options``.
- ``fake_xai_server_options`` / ``xai_client_options``: the keyword arguments of the two above
  (empty by default). Override either fixture in a test module or a ``conftest.py`` to change the
  server's settings or the client's options for those tests.
- ``fake_xai_server_factory``: ``await fake_xai_server_factory(**options)`` starts one more fake
  server, stopped at the end of the test.
- ``xai_instant_retries``: retry backoff and deferred-poll waits return at once for the whole
  test (use it with ``pytest.mark.usefixtures`` for tests that build their own clients).

The fixtures need ``pytest-asyncio``; without it the plugin defines nothing, so it never breaks a
test run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from typing import Any

__all__: list[str] = []

try:
    import pytest
    import pytest_asyncio
except ImportError:  # pragma: no cover - depends on the user's environment
    pass
else:
    from .._bulk._client import AsyncClient
    from .._wire._retry import instant_retries
    from ._server import FakeXAIServer

    @pytest.fixture
    def fake_xai_server_options() -> dict[str, Any]:
        """Keyword arguments of ``FakeXAIServer`` for ``fake_xai_server``; override to change."""
        return {}

    @pytest.fixture
    def xai_client_options() -> dict[str, Any]:
        """Extra keyword arguments of ``AsyncClient`` for ``xai_client``; override to change.

        ``api_key`` and ``base_url`` default to the fake server's; a value here wins.
        """
        return {}

    @pytest.fixture
    def xai_instant_retries() -> Iterator[None]:
        """Every retry backoff and deferred-poll wait returns at once during the test."""
        with instant_retries():
            yield

    @pytest_asyncio.fixture
    async def fake_xai_server(
        fake_xai_server_options: dict[str, Any],
    ) -> AsyncIterator[FakeXAIServer]:
        """A started ``FakeXAIServer`` on 127.0.0.1, stopped afterwards."""
        async with FakeXAIServer(**fake_xai_server_options) as server:
            yield server

    @pytest_asyncio.fixture
    async def fake_xai_server_factory() -> AsyncIterator[Callable[..., Awaitable[FakeXAIServer]]]:
        """A coroutine function starting more fake servers; all are stopped after the test."""
        async with AsyncExitStack() as stack:

            async def start(*args: Any, **options: Any) -> FakeXAIServer:
                return await stack.enter_async_context(FakeXAIServer(*args, **options))

            yield start

    @pytest_asyncio.fixture
    async def xai_client(
        fake_xai_server: FakeXAIServer, xai_client_options: dict[str, Any]
    ) -> AsyncIterator[AsyncClient]:
        """An ``AsyncClient`` talking to ``fake_xai_server``, retrying without sleeping."""
        options = {
            "api_key": fake_xai_server.api_key,
            "base_url": fake_xai_server.base_url,
            **xai_client_options,
        }
        with instant_retries():
            async with AsyncClient(**options) as client:
                yield client

    __all__ += [
        "fake_xai_server",
        "fake_xai_server_factory",
        "fake_xai_server_options",
        "xai_client",
        "xai_client_options",
        "xai_instant_retries",
    ]
