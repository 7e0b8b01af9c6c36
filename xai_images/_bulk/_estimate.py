"""``xai_images.bulk.estimate``: price a whole job from the API's price table, sending nothing
but ``GET /image-generation-models``."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any

from .._api._pricing import Estimate, ItemPrice, PriceTable
from .._errors import ValidationError
from ._batch import Job, Outcome, name_job
from ._jobs import load_jobs

if TYPE_CHECKING:
    from .._api._client import CoreClient

__all__ = ["estimate_job"]


async def _jobs(source: Any) -> AsyncIterator[Job]:
    if isinstance(source, (str, os.PathLike)):
        for job in await asyncio.to_thread(load_jobs, source):
            yield job
    elif isinstance(source, AsyncIterable):
        async for job in source:
            yield job
    else:
        for job in source:
            yield job


async def estimate_job(
    client: CoreClient,
    jobs: str | os.PathLike[str] | Iterable[Job] | AsyncIterable[Job],
) -> Estimate:
    """Price every item of a job (what ``client.batch`` takes: a JSONL path, requests or
    dicts) from the API's price table; no generation request is sent.

    Items that cannot be read (each bad line of a job file) or name a model the API does not
    list are left out of the total and named in ``Estimate.problems``; the rest are priced.
    Where the server picks the tier the price is the dearest it could pick (``worst_case``).

    Raises:
        OSError: the job file cannot be read.
        APIError: the price table could not be read.
    """
    table = PriceTable(await client.images.models.list())
    prices: list[ItemPrice] = []
    problems: list[tuple[str, str]] = []
    ids: set[str] = set()
    repeats: dict[str, int] = {}
    number = 0
    async for job in _jobs(jobs):
        number += 1
        named = name_job(job, ids, repeats, number)
        if isinstance(named, Outcome):
            problems.append((named.id, str(named.error)))
            continue
        item_id, request = named
        try:
            prices.append(table.price(request))
        except ValidationError as exc:
            where = f"line-{request.line}" if request.line is not None else item_id
            problems.append((where, str(exc)))
    return Estimate.of(prices, problems)
