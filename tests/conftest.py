"""Shared fixtures, built on the package's own pytest plugin (``xai_images.testing.pytest_plugin``).

The plugin gives ``fake_xai_server`` and ``xai_client``; a test module changes their arguments by
overriding ``fake_xai_server_options`` / ``xai_client_options``. The short names below are what
most test modules use.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

import xai_images
from xai_images.testing import FakeXAIServer


@pytest.fixture
def server(fake_xai_server: FakeXAIServer) -> FakeXAIServer:
    """The plugin's fake server, under a short name."""
    return fake_xai_server


@pytest.fixture
def client(xai_client: xai_images.AsyncClient) -> xai_images.AsyncClient:
    """The plugin's client on the fake server, under a short name."""
    return xai_client


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A bare aiohttp session, for tests that speak HTTP to the fake server directly."""
    async with aiohttp.ClientSession() as client_session:
        yield client_session
