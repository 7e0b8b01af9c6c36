"""xai-images: ``AsyncClient`` + ``client.images.generate(...)`` + ``resp.save(directory)``.

Library defaults, except the client's download slots (``DownloadOptions.concurrency``, default
16): the peers download the n images of every prompt in flight at once, and the latency-bound run
needs its C * n = 64 downloads of 50 ms in flight together to reach its ceiling. So the slots are
C * n, capped at 64: each slot holds up to about 3 * ``chunk_size`` of buffers, and beyond 64 more
slots only cost memory on loopback (benchmarks/README.md has the sweep). The connection pool is
sized to match. ``BENCH_XAI_DOWNLOADS`` and ``BENCH_XAI_CHUNK_SIZE`` in the environment override
the slots and the chunk size (``bench_save.py --xai-downloads/--xai-chunk-size`` set them).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

import attrs
from _common import Args, Job, main, prompt_text

from xai_images._client import AsyncClient
from xai_images._download import DownloadOptions


@asynccontextmanager
async def setup(args: Args) -> AsyncIterator[Job]:
    """Open one client and yield the per-prompt job."""
    downloads = int(os.environ.get("BENCH_XAI_DOWNLOADS", 0)) or min(args.concurrency * args.n, 64)
    options = DownloadOptions(concurrency=downloads)
    if os.environ.get("BENCH_XAI_CHUNK_SIZE"):
        options = attrs.evolve(options, chunk_size=int(os.environ["BENCH_XAI_CHUNK_SIZE"]))
    async with AsyncClient(
        args.api_key,
        base_url=args.base_url,
        max_connections=args.concurrency + downloads,
        download=options,
    ) as client:

        async def job(i: int) -> int:
            resp = await client.images.generate(
                prompt_text(i),
                model=args.model,
                n=args.n,
                response_format="url" if args.mode == "url" else "b64_json",
            )
            saved = await resp.save(args.out)
            return sum(s.bytes for s in saved)

        yield job


if __name__ == "__main__":
    main("xai_images", setup, {"xai-images": version("xai-images")})
