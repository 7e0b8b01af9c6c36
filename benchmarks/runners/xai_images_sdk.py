"""xai-images: ``AsyncClient`` + ``client.images.generate(...)`` + ``resp.save(directory)``.

Library defaults throughout: one client, the default connection pool and the default
``DownloadOptions`` (16 download slots, 256 KiB chunks), as a user who sets nothing gets.
``BENCH_XAI_DOWNLOADS`` and ``BENCH_XAI_CHUNK_SIZE`` in the environment override the download
slots and the chunk size (``bench_save.py --xai-downloads/--xai-chunk-size`` set them); the
README has a sweep of both.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

import attrs
from _common import Args, Job, main, prompt_text

import xai_images

# Resolved now, before the job's clock starts, as the floor's ``import aiohttp`` is: since
# ``import xai_images`` loads the client on first use, the first ``xai_images.AsyncClient`` inside
# the job would add the client's import (aiohttp, cattrs, the models: ~0.25-0.3 s of CPU) to the
# job's CPU seconds. The import is measured on its own by ``bench_import.py``.
_ = xai_images.AsyncClient


def _download_options() -> xai_images.DownloadOptions | None:
    slots = os.environ.get("BENCH_XAI_DOWNLOADS")
    chunk = os.environ.get("BENCH_XAI_CHUNK_SIZE")
    if not slots and not chunk:
        return None
    options = xai_images.DownloadOptions()
    if slots:
        options = attrs.evolve(options, concurrency=int(slots))
    if chunk:
        options = attrs.evolve(options, chunk_size=int(chunk))
    return options


@asynccontextmanager
async def setup(args: Args) -> AsyncIterator[Job]:
    """Open one client and yield the per-prompt job."""
    async with xai_images.AsyncClient(
        args.api_key, base_url=args.base_url, download=_download_options()
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
    main("xai_images", setup, {"xai-images": version("xai-images"), "from": xai_images.__file__})
