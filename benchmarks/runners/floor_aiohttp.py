"""The floor: a minimal hand-written aiohttp program, no SDK and no checks.

One ``aiohttp.ClientSession``; POST the generation, ``json.loads`` the body; url mode reads each
image whole with ``await resp.read()`` (the n images of a prompt in parallel) and writes it with a
plain blocking write; b64 mode ``base64.b64decode``s each value and writes it. No status checks,
no retries, no sniffing, no atomic rename: the fastest a careless program can go.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

import aiohttp
from _common import Args, Job, main, prompt_text, write_file


@asynccontextmanager
async def setup(args: Args) -> AsyncIterator[Job]:
    """Open one session and yield the per-prompt job."""
    # limit=0: the job driver already bounds work to C prompts (C * n downloads) in flight.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        url = args.base_url.rstrip("/") + "/images/generations"
        headers = {"Authorization": f"Bearer {args.api_key}"}

        async def download(path: str, image_url: str) -> int:
            async with session.get(image_url) as resp:
                data = await resp.read()
            write_file(path, data)
            return len(data)

        async def job(i: int) -> int:
            body = {
                "model": args.model,
                "prompt": prompt_text(i),
                "n": args.n,
                "response_format": args.mode,
            }
            async with session.post(url, json=body, headers=headers) as resp:
                payload = json.loads(await resp.read())
            items = payload["data"]
            if args.mode == "url":
                sizes = await asyncio.gather(
                    *(download(f"{args.out}/{i}-{k}.png", it["url"]) for k, it in enumerate(items))
                )
                return sum(sizes)
            written = 0
            for k, it in enumerate(items):
                data = base64.b64decode(it["b64_json"])
                write_file(f"{args.out}/{i}-{k}.png", data)
                written += len(data)
            return written

        yield job


if __name__ == "__main__":
    main("floor_aiohttp", setup, {"aiohttp": version("aiohttp")})
