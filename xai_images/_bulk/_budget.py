"""``max_cost``: a bulk job's budget, as the spending seam of the engine.

Before a billable request is sent the engine calls ``reserve(request)``: its worst-case price
(`PriceTable.price`) is added to the ledger if spent + reserved + price stays within the budget;
otherwise the request is not sent and the run ends as "budget reached". When the answer reports
``usage`` the engine calls ``settle(reservation, ticks)`` and the reservation becomes the actual
cost; a request the server provably did not run is ``release``-d. An answer without a cost (or a
lost answer) keeps the reservation as spent: the budget errs on the side of spending less.

The spend of earlier runs comes from the manifest (each record's ``cost_in_usd_ticks``; the
worst-case price of an ``unknown`` item, whose answer was lost), so a resumed job counts it.
With a shared ledger (Redis) every process and shard of a job counts against one number.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

import attrs

from .._errors import ValidationError
from .._units import TICKS_PER_USD
from .._wire._shared_budget import LocalLedger, SharedLedger, SpendLedger, spend_key

if TYPE_CHECKING:
    from .._api._client import CoreClient
    from .._api._pricing import PriceTable
    from .._api._requests import Request
    from ._manifest import ManifestRecord

__all__ = ["Budget", "Reservation", "open_budget", "parse_max_cost", "spent_in"]

_LIMIT = "a positive number of US dollars (Decimal, int, float or a numeric string)"


def parse_max_cost(value: object) -> int:
    """``max_cost`` in US dollars as USD ticks (rounded down to a whole tick).

    Raises:
        ValidationError: (field ``max_cost``) not a number, negative, zero, NaN or infinite.
    """
    if isinstance(value, bool) or not isinstance(value, (Decimal, int, float, str)):
        raise ValidationError("max_cost", value, _LIMIT)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValidationError("max_cost", value, _LIMIT)
    try:
        usd = Decimal(value.strip() if isinstance(value, str) else str(value))
    except (InvalidOperation, ValueError):
        raise ValidationError("max_cost", value, _LIMIT) from None
    if not usd.is_finite() or usd <= 0:
        raise ValidationError("max_cost", value, _LIMIT)
    ticks = int(usd * TICKS_PER_USD)
    if ticks <= 0:
        raise ValidationError("max_cost", value, _LIMIT)
    return ticks


def spent_in(records: Iterable[ManifestRecord], table: PriceTable) -> int:
    """What the items of a manifest spent, in USD ticks: the cost the API reported, and for an
    item whose answer was lost (``unknown``, maybe billed) the worst-case price of its request."""
    total = 0
    for record in records:
        if record.cost_in_usd_ticks is not None:
            total += record.cost_in_usd_ticks
        elif record.status == "unknown":
            total += _worst_case(record.request, table)
    return total


def _worst_case(fields: Mapping[str, Any], table: PriceTable) -> int:
    def text(name: str) -> str | None:
        value = fields.get(name)
        return value if isinstance(value, str) else None

    n = fields.get("n")
    count = n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1
    try:
        return table.price_of(text("model"), text("quality"), text("resolution"), count).ticks
    except ValidationError:  # a model no longer listed: the dearest listed image
        dearest = max((t.price_per_image for m in table.models for t in m.pricing), default=0)
        return dearest * count


@attrs.frozen
class Reservation:
    """A request's worst-case price, held against the budget until it is settled."""

    ticks: int


class Budget:
    """The spending seam with a limit: ``reserve`` / ``settle`` / ``release``.

    Args:
        limit: the budget in USD ticks (`parse_max_cost`).
        table: the API's price table.
        ledger: where the spend is counted (default: this process only).
    """

    def __init__(self, limit: int, table: PriceTable, ledger: SpendLedger | None = None) -> None:
        self.limit = limit
        self._table = table
        self._ledger: SpendLedger = ledger or LocalLedger()
        self.reached = False
        """``True`` once a request was not sent because it could exceed the budget."""

    def __repr__(self) -> str:
        return f"<Budget limit={self.limit} reached={self.reached}>"

    def check_covers_one_image(self, max_cost: object) -> None:
        """Refuse a budget below the cheapest image the table lists.

        Raises:
            ValidationError: (field ``max_cost``) smaller than one image.
        """
        cheapest = min(
            (t.price_per_image for m in self._table.models for t in m.pricing), default=None
        )
        if cheapest is not None and self.limit < cheapest:
            usd = Decimal(cheapest) / TICKS_PER_USD
            raise ValidationError("max_cost", max_cost, f"at least one image (${usd})")

    async def reserve(
        self, request: Request, *, item_id: str | None = None, wait: bool = True
    ) -> Reservation | None:
        """Hold ``request``'s worst-case price; ``None`` (and `reached`) when it may not fit.
        ``item_id`` names the item (unused here; part of the engine's seam).

        ``wait``: wait for requests in flight to settle before refusing (the real-time path;
        the Batch API path settles only once everything is submitted, so it cannot wait).

        Raises:
            ValidationError: (field ``model``) the request's model is not in the price table.
        """
        if self.reached:
            return None
        ticks = self._table.price(request).ticks
        if not await self._ledger.reserve(ticks, self.limit, wait=wait):
            self.reached = True
            return None
        return Reservation(ticks)

    async def settle(self, reservation: Reservation, cost_in_usd_ticks: int | None) -> None:
        """The answer came: count its reported cost (the reservation when it reports none)."""
        actual = reservation.ticks if cost_in_usd_ticks is None else cost_in_usd_ticks
        await self._ledger.settle(reservation.ticks, actual)

    def learn_default_model(self, model: str | None) -> None:
        """The answer to a request without ``model`` named this model: price such requests
        at it from now on (`PriceTable.learn_default`)."""
        self._table.learn_default(model)

    async def release(self, reservation: Reservation) -> None:
        """The request was not run (refused, or never reached the server): give it back."""
        await self._ledger.release(reservation.ticks)

    async def spent(self) -> int:
        """Spent plus reserved so far, in USD ticks (earlier runs included)."""
        return await self._ledger.committed()


async def open_budget(
    client: CoreClient,
    max_cost: object,
    limit: int,
    records: Iterable[ManifestRecord],
    *,
    name: str,
) -> tuple[Budget, SharedLedger | None]:
    """The budget of a run: the price table read from the API, the spend of earlier runs
    (``records``, iterated in a worker thread: a manifest is read off the event loop) counted,
    on Redis when the client shares its rate limit there (``shared_limit``).

    Raises:
        ValidationError: ``max_cost`` is smaller than one image.
        APIError: the price table could not be read.
    """
    from .._api._pricing import PriceTable

    table = PriceTable(await client.images.models.list())
    # ``records`` may read the manifest as it is iterated: counted in a worker thread.
    earlier = await asyncio.to_thread(spent_in, records, table)
    shared: SharedLedger | None = None
    ledger: SpendLedger
    url = client._shared_limit_url
    if url is not None:
        shared = SharedLedger(url, spend_key(client._key.get(), name))
        await shared.seed(earlier)
        ledger = shared
    else:
        ledger = LocalLedger(earlier)
    budget = Budget(limit, table, ledger)
    try:
        budget.check_covers_one_image(max_cost)
    except ValidationError:
        if shared is not None:
            await shared.aclose()
        raise
    return budget, shared
