"""Peer: the official xai-sdk (gRPC), pointed at ``benchmarks/_grpc_fake.py``.

``xai_sdk.AsyncClient(..., use_insecure_channel=True)`` with its defaults otherwise (its channel
options, retry policy and timeout), ``await client.image.sample_batch(prompt, model=..., n=...,
image_format="url"|"base64")``, then each image's bytes as a user of the SDK gets them:
``await image.image``, which downloads a URL with the SDK's own HTTP code (``aiohttp.request``,
a new session per image) or decodes the base64 on the loop; a plain blocking write, like the
floor. ``--base-url`` is the gRPC fake's address, ``grpc://127.0.0.1:PORT``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

import xai_sdk
from _common import Args, Job, main, prompt_text, write_file


@asynccontextmanager
async def setup(args: Args) -> AsyncIterator[Job]:
    """Open the SDK's client on the fake's address and yield the per-prompt job."""
    host = args.base_url.removeprefix("grpc://").rstrip("/")
    image_format = "url" if args.mode == "url" else "base64"
    async with xai_sdk.AsyncClient(
        api_key=args.api_key, api_host=host, use_insecure_channel=True
    ) as client:

        async def save(path: str, image: xai_sdk.aio.image.ImageResponse) -> int:
            data = await image.image
            write_file(path, data)
            return len(data)

        async def job(i: int) -> int:
            images = await client.image.sample_batch(
                prompt_text(i), model=args.model, n=args.n, image_format=image_format
            )
            named = [(f"{args.out}/{i}-{k}.png", image) for k, image in enumerate(images)]
            if args.mode == "url":
                # The n downloads of a prompt in parallel, as the floor does.
                return sum(await asyncio.gather(*(save(p, image) for p, image in named)))
            written = 0
            for p, image in named:
                written += await save(p, image)
            return written

        yield job


if __name__ == "__main__":
    main(
        "xai_sdk",
        setup,
        {"xai-sdk": version("xai-sdk"), "grpcio": version("grpcio"), "aiohttp": version("aiohttp")},
    )
