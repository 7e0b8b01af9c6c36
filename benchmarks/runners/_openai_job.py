"""The job both openai peers run: generate through the SDK, then write every image to disk.

Only how an image URL is fetched differs between the two peers, so that is passed in.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable

import openai
from _common import Args, Job, prompt_text, write_file


def openai_job(
    args: Args, client: openai.AsyncOpenAI, fetch: Callable[[str], Awaitable[bytes]]
) -> Job:
    """Return the per-prompt job: one generation, its images written as plain files."""

    async def download(path: str, image_url: str) -> int:
        data = await fetch(image_url)
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
                *(download(f"{args.out}/{i}-{k}.png", it.url or "") for k, it in enumerate(items))
            )
            return sum(sizes)
        written = 0
        for k, it in enumerate(items):
            data = base64.b64decode(it.b64_json or "")
            write_file(f"{args.out}/{i}-{k}.png", data)
            written += len(data)
        return written

    return job
