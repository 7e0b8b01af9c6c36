"""Errors that a hint would fix carry it: no /v1 in the base URL, the fake not started, no key."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import xai_images
from xai_images.testing import FakeXAIServer, Reply

FAKE_PORT = 8000  # where the README tells users to start the fake


@pytest.fixture
def no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XAI_API_KEY", raising=False)


@pytest.mark.usefixtures("no_key")
def test_missing_key_names_the_sync_client() -> None:
    """The blocking Client without a key says to pass api_key= to Client, not AsyncClient."""
    with pytest.raises(xai_images.ConfigurationError) as caught:
        xai_images.Client()
    assert "pass api_key= to Client " in str(caught.value)
    assert "AsyncClient" not in str(caught.value)


@pytest.mark.usefixtures("no_key")
def test_missing_key_names_the_async_client() -> None:
    """The AsyncClient without a key names AsyncClient and XAI_API_KEY."""
    with pytest.raises(xai_images.ConfigurationError) as caught:
        xai_images.AsyncClient()
    assert "pass api_key= to AsyncClient" in str(caught.value)
    assert "XAI_API_KEY" in str(caught.value)


async def test_404_without_v1_says_to_add_it(fake_xai_server: FakeXAIServer) -> None:
    """A base URL without /v1 gets a 404 whose message suggests the URL with /v1."""
    root = fake_xai_server.base_url.removesuffix("/v1")
    async with xai_images.AsyncClient(api_key="k", base_url=root, max_retries=0) as client:
        with pytest.raises(xai_images.NotFoundError) as caught:
            await client.images.generate("a cat")
    assert "has no /v1" in str(caught.value)
    assert f"{root}/v1" in str(caught.value)


async def test_404_with_v1_has_no_such_hint(fake_xai_server: FakeXAIServer) -> None:
    """A 404 under a base URL that has /v1 gets no /v1 hint."""
    fake_xai_server.enqueue(Reply.error(404))
    async with xai_images.AsyncClient(
        api_key="k", base_url=fake_xai_server.base_url, max_retries=0
    ) as client:
        with pytest.raises(xai_images.NotFoundError) as caught:
            await client.images.generate("a cat")
    assert "has no /v1" not in str(caught.value)


@pytest.fixture
def refused_fake_port() -> Iterator[int]:
    """Port 8000 on loopback, bound but not listening: connections to it are refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", FAKE_PORT))
    except OSError:
        sock.close()
        pytest.skip(f"port {FAKE_PORT} is in use on this machine")
    try:
        yield FAKE_PORT
    finally:
        sock.close()


async def test_refused_on_the_fake_port_suggests_starting_it(refused_fake_port: int) -> None:
    """Connection refused on 127.0.0.1:8000 suggests starting the fake, with the command."""
    url = f"http://127.0.0.1:{refused_fake_port}/v1"
    async with xai_images.AsyncClient(api_key="k", base_url=url, max_retries=0) as client:
        with pytest.raises(xai_images.APIConnectionError) as caught:
            await client.images.generate("a cat")
    assert ".venv/bin/python -m xai_images.testing --port 8000" in str(caught.value)


async def test_cli_refused_on_the_fake_port_suggests_starting_it(
    refused_fake_port: int, tmp_path: Path
) -> None:
    """The command, run as a subprocess, says how to start the fake when 8000 refuses."""
    env = {**os.environ, "XAI_API_KEY": "k", "XAI_BASE_URL": f"http://127.0.0.1:{FAKE_PORT}/v1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "xai_images._ui._cli",
        "generate",
        "a cat",
        "-o",
        str(tmp_path),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 2
    assert "python -m xai_images.testing --port 8000" in err.decode()


async def test_refused_elsewhere_has_no_fake_hint(unused_tcp_port: int) -> None:
    """A refused connection on another port gets no advice about the fake."""
    url = f"http://127.0.0.1:{unused_tcp_port}/v1"
    async with xai_images.AsyncClient(api_key="k", base_url=url, max_retries=0) as client:
        with pytest.raises(xai_images.APIConnectionError) as caught:
            await client.images.generate("a cat")
    assert "xai_images.testing" not in str(caught.value)
