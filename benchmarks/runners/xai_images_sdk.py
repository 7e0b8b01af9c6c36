"""xai-images: ``AsyncClient`` + ``client.images.generate(...)`` + ``resp.save(directory)``.

The client's download semaphore is sized to C * n so that, like the peers (which download the n
images of every prompt in flight at once), downloads are bounded by the job's own concurrency and
not by the library default (16); the connection pool is sized to match.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

from _common import Args, Job, main, prompt_text

from xai_images._client import AsyncClient
from xai_images._download import DownloadOptions


@asynccontextmanager
async def setup(args: Args) -> AsyncIterator[Job]:
    """Open one client and yield the per-prompt job."""
    downloads = args.concurrency * args.n
    async with AsyncClient(
        args.api_key,
        base_url=args.base_url,
        max_connections=args.concurrency + downloads,
        download=DownloadOptions(concurrency=downloads),
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
