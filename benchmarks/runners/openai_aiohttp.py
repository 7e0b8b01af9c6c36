"""Peer: the ``openai`` SDK pointed at the fake, downloads by hand with an aiohttp session.

Generation as in ``openai_httpx.py`` (default SDK client, default retries); each image is read
whole through one ``aiohttp.ClientSession`` and written with a plain blocking write; b64 mode
decodes with ``base64.b64decode``.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

import aiohttp
import openai
from _common import Args, Job, main, prompt_text, write_file


@asynccontextmanager
async def setup(args: Args) -> AsyncIterator[Job]:
    """Open the SDK client and one aiohttp session for downloads, and yield the job."""
    async with (
        openai.AsyncOpenAI(base_url=args.base_url, api_key=args.api_key) as client,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session,
    ):

        async def download(path: str, image_url: str) -> int:
            async with session.get(image_url) as resp:
                data = await resp.read()
            write_file(path, data)
            return len(data)

        async def job(i: int) -> int:
            result = await client.images.generate(
                model=args.model,
                prompt=prompt_text(i),
                n=args.n,
                response_format="url" if args.mode == "url" else "b64_json",
            )
            items = result.data or []
            if args.mode == "url":
                sizes = await asyncio.gather(
                    *(
                        download(f"{args.out}/{i}-{k}.png", it.url or "")
                        for k, it in enumerate(items)
                    )
                )
                return sum(sizes)
            written = 0
            for k, it in enumerate(items):
                data = base64.b64decode(it.b64_json or "")
                write_file(f"{args.out}/{i}-{k}.png", data)
                written += len(data)
            return written

        yield job


if __name__ == "__main__":
    main("openai_aiohttp", setup, {"openai": version("openai"), "aiohttp": version("aiohttp")})
