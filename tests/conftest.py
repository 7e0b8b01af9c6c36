"""Shared fixtures, built on the package's own pytest plugin (``xai_images.testing.pytest_plugin``).

The plugin gives ``fake_xai_server`` and ``xai_client``; a test module changes their arguments by
overriding ``fake_xai_server_options`` / ``xai_client_options``. The short names below are what
most test modules use.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator

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


@pytest.fixture
def env(server: FakeXAIServer, monkeypatch: pytest.MonkeyPatch) -> FakeXAIServer:
    """The fake server, with ``XAI_API_KEY`` and ``XAI_BASE_URL`` pointing the CLI at it."""
    monkeypatch.setenv("XAI_API_KEY", server.api_key)
    monkeypatch.setenv("XAI_BASE_URL", server.base_url)
    return server


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A bare aiohttp session, for tests that speak HTTP to the fake server directly."""
    async with aiohttp.ClientSession() as client_session:
        yield client_session


# --- A real redis-server for the shared rate limit -------------------------------------------
# Self-contained block: the `redis_server` fixture starts a throwaway redis-server on a free
# loopback port. It skips when the binary is missing, unless XAI_IMAGES_REQUIRE_REDIS is set
# (CI installs it), in which case it fails.
REDIS_PASSWORD = "s3cret-pw"


def _redis_free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(f"AUTH {REDIS_PASSWORD}\r\nPING\r\n".encode())
            data = b""
            while b"PONG" not in data:
                chunk = sock.recv(64)
                if not chunk:
                    return False
                data += chunk
            return True
    except OSError:
        return False


class RedisServer:
    """A throwaway redis-server on a loopback port, with a password (to check redaction)."""

    def __init__(self, binary: str, port: int) -> None:
        self.binary = binary
        self.port = port
        self.password = REDIS_PASSWORD
        self.url = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--requirepass",
                REDIS_PASSWORD,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        # A child process cannot be awaited for readiness; poll it with a ping.
        while not _redis_ping(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A running redis-server (``.url`` carries its password); stopped after the test."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("XAI_IMAGES_REQUIRE_REDIS"):
            pytest.fail("redis-server is not installed but XAI_IMAGES_REQUIRE_REDIS is set")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer(binary, _redis_free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


# --- end of the redis-server block ------------------------------------------------------------


# --- A real S3 API: moto's server ---------------------------------------------------------------
# Self-contained block: `moto_endpoint` runs moto's S3 server on a loopback port for a module;
# `s3_target` creates a fresh bucket, points obstore's standard environment at the server (with
# dummy keys) and gives the bucket's URL. Moto accepts any signature.
S3_SECRET_KEY = "dummy-secret-key-never-shown"


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """The URL of a running moto S3 server on 127.0.0.1; stopped after the module."""
    import logging

    moto_server = pytest.importorskip("moto.server")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_target(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """``s3://<new bucket>`` on the moto server, with the AWS environment pointing there."""
    import secrets
    import urllib.request

    bucket = f"test-{secrets.token_hex(4)}"
    request = urllib.request.Request(f"{moto_endpoint}/{bucket}", method="PUT")
    with urllib.request.urlopen(request) as answer:  # create the bucket
        assert answer.status == 200
    for name, value in {
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "dummy-key-id",
        "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    return f"s3://{bucket}"


def open_multipart_uploads(endpoint: str, bucket: str) -> list[str]:
    """The keys of the multipart uploads still open in ``bucket`` (orphaned parts)."""
    import re
    import urllib.request

    with urllib.request.urlopen(f"{endpoint}/{bucket}?uploads") as answer:
        body = answer.read().decode()
    return re.findall(r"<Upload>.*?<Key>(.*?)</Key>", body, flags=re.S)


# --- end of the moto block ------------------------------------------------------------------
