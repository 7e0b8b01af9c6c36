"""Peer: the ``openai`` SDK pointed at the fake, downloads by hand with its own HTTP client.

``openai.AsyncOpenAI(base_url=..., api_key=...)`` with default retries and timeouts, built on the
SDK's own default HTTP client (``openai.DefaultAsyncHttpxClient``, an httpx-family client: httpx2
in openai 3.x), which also does the downloads, reading each body whole. b64 mode decodes with
``base64.b64decode``. Files are written with a plain blocking write, as a user of the SDK would.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

import openai
from _common import Args, Job, main, prompt_text, write_file


@asynccontextmanager
async def setup(args: Args) -> AsyncIterator[Job]:
    """Open the SDK client (sharing its HTTP client for downloads) and yield the job."""
    http = openai.DefaultAsyncHttpxClient()
    async with openai.AsyncOpenAI(
        base_url=args.base_url, api_key=args.api_key, http_client=http
    ) as client:

        async def download(path: str, image_url: str) -> int:
            resp = await http.get(image_url)
            data = resp.content
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
    main("openai_httpx", setup, {"openai": version("openai")})
