"""Peer: the ``openai`` SDK pointed at the fake, downloads by hand with an aiohttp session.

Generation as in ``openai_httpx.py`` (default SDK client, default retries); each image is read
whole through one ``aiohttp.ClientSession`` and written with a plain blocking write; b64 mode
decodes with ``base64.b64decode``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

import aiohttp
import openai
from _common import Args, Job, main
from _openai_job import openai_job


@asynccontextmanager
async def setup(args: Args) -> AsyncIterator[Job]:
    """Open the SDK client and one aiohttp session for downloads, and yield the job."""
    async with (
        openai.AsyncOpenAI(base_url=args.base_url, api_key=args.api_key) as client,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session,
    ):

        async def fetch(image_url: str) -> bytes:
            async with session.get(image_url) as resp:
                return await resp.read()

        yield openai_job(args, client, fetch)


if __name__ == "__main__":
    main("openai_aiohttp", setup, {"openai": version("openai"), "aiohttp": version("aiohttp")})
