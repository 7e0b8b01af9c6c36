"""Peer: the ``openai`` SDK pointed at the fake, downloads by hand with its own HTTP client.

``openai.AsyncOpenAI(base_url=..., api_key=...)`` with default retries and timeouts, built on the
SDK's own default HTTP client (``openai.DefaultAsyncHttpxClient``, an httpx-family client: httpx2
in openai 3.x), which also does the downloads, reading each body whole. b64 mode decodes with
``base64.b64decode``. Files are written with a plain blocking write, as a user of the SDK would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

import openai
from _common import Args, Job, main
from _openai_job import openai_job


@asynccontextmanager
async def setup(args: Args) -> AsyncIterator[Job]:
    """Open the SDK client (sharing its HTTP client for downloads) and yield the job."""
    http = openai.DefaultAsyncHttpxClient()
    async with openai.AsyncOpenAI(
        base_url=args.base_url, api_key=args.api_key, http_client=http
    ) as client:

        async def fetch(image_url: str) -> bytes:
            return (await http.get(image_url)).content

        yield openai_job(args, client, fetch)


if __name__ == "__main__":
    main("openai_httpx", setup, {"openai": version("openai")})
