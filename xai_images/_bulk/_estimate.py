"""``xai_images.bulk.estimate``: price a whole job from the API's price table, sending nothing
but ``GET /image-generation-models``."""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, Iterable
from typing import TYPE_CHECKING

from .._api._pricing import Estimate, ItemPrice, PriceTable
from .._errors import ValidationError
from ._engine import _Names, name_job
from ._jobs import Job, iter_source
from ._outcome import Outcome

if TYPE_CHECKING:
    from .._api._client import CoreClient

__all__ = ["estimate_job"]


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
    names = _Names()
    number = 0
    async for job in iter_source(jobs):
        number += 1
        named = name_job(job, names, number)
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
