"""Prices of requests, from the API's own price table (``client.images.models.list()``).

A request is priced at the tier it names. Where it leaves the tier to the server (``quality``
unset or ``"auto"``, ``resolution`` unset, ``model`` unset until an answer named the server's
default), the price is the dearest tier the server could pick, and flagged ``worst_case``:
``auto`` is billed at the tier actually served. The listing publishes prices per output image
only; an estimate therefore leaves out anything else the API may bill (the answer's ``usage``
is the bill).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

import attrs

from .._errors import ValidationError
from .._units import TICKS_PER_USD
from ._image_models import ImageModel, PriceTier
from ._requests import Request

__all__ = ["DEFAULT_MODEL_LABEL", "Estimate", "EstimateRow", "ItemPrice", "PriceTable"]

DEFAULT_MODEL_LABEL = "(default)"
"""The model column of a request that names no model (the server picks one)."""

_UNKNOWN_TIER = "auto"  # what a tier column shows when the server picks it
_TICKS_PER_CENT = TICKS_PER_USD // 100


class _InTicks:
    """A price held in USD ticks (``ticks``), also shown in dollars (``usd``)."""

    __slots__ = ()
    ticks: int

    @property
    def usd(self) -> Decimal:
        """``ticks`` in US dollars, exact."""
        return Decimal(self.ticks) / TICKS_PER_USD


@attrs.frozen
class ItemPrice(_InTicks):
    """What one request may cost.

    Attributes:
        model: the model priced (`DEFAULT_MODEL_LABEL` when the request names none).
        quality: the quality priced, or ``"auto"`` when the server picks it.
        resolution: the resolution priced, or ``"auto"`` when the server picks it.
        images: images asked for (``n``).
        ticks: the price of all of them, in USD ticks (the worst case when ``worst_case``).
        worst_case: the server picks part of the tier and the tiers it may pick differ in price.
    """

    model: str
    quality: str
    resolution: str
    images: int
    ticks: int
    worst_case: bool


@attrs.frozen
class EstimateRow(_InTicks):
    """Requests of one model and tier, summed.

    Attributes:
        model, quality, resolution: as in `ItemPrice`.
        requests: how many requests.
        images: how many images.
        ticks: their price in USD ticks.
        worst_case: at least one of them is priced at its worst case.
    """

    model: str
    quality: str
    resolution: str
    requests: int
    images: int
    ticks: int
    worst_case: bool


@attrs.frozen
class Estimate(_InTicks):
    """The price of a request or a job, from the API's price table.

    Attributes:
        ticks: the total in USD ticks (a worst case when ``worst_case``).
        worst_case: part of the total is a worst case (the server picks the tier).
        rows: the breakdown by model and tier, in order of first appearance.
        problems: items that could not be priced, as ``(name, message)``: a job-file line
            that cannot be read (``"line-7"``), or a request naming a model the API does not
            list. They are not in the total.
    """

    ticks: int
    worst_case: bool
    rows: tuple[EstimateRow, ...] = ()
    problems: tuple[tuple[str, str], ...] = ()

    @property
    def requests(self) -> int:
        """Requests priced."""
        return sum(row.requests for row in self.rows)

    @property
    def images(self) -> int:
        """Images priced."""
        return sum(row.images for row in self.rows)

    @classmethod
    def of(cls, prices: Iterable[ItemPrice], problems: Iterable[tuple[str, str]] = ()) -> Estimate:
        """Sum item prices into rows by model and tier."""
        rows: dict[tuple[str, str, str], EstimateRow] = {}
        for price in prices:
            key = (price.model, price.quality, price.resolution)
            row = rows.get(key)
            if row is None:
                row = EstimateRow(*key, 0, 0, 0, False)
            rows[key] = EstimateRow(
                *key,
                row.requests + 1,
                row.images + price.images,
                row.ticks + price.ticks,
                row.worst_case or price.worst_case,
            )
        total = sum(row.ticks for row in rows.values())
        worst = any(row.worst_case for row in rows.values())
        return cls(total, worst, tuple(rows.values()), tuple(problems))


def _tiers(model: ImageModel) -> tuple[PriceTier, ...]:
    """The model's tiers; a model that lists only ``image_price`` has that one tier."""
    if model.pricing:
        return model.pricing
    if model.image_price is not None:
        ticks = int(model.image_price * _TICKS_PER_CENT)
        return (PriceTier("medium", "1k", ticks),)
    return ()


class PriceTable:
    """The listed models by id and alias, and the price of a request under them.

    Args:
        models: the listing (``await client.images.models.list()``).
    """

    def __init__(self, models: Iterable[ImageModel]) -> None:
        self.models = tuple(models)
        self._default: ImageModel | None = None
        self._by_name: dict[str, ImageModel] = {}
        for model in self.models:
            for name in model.names():
                self._by_name.setdefault(name, model)

    def __repr__(self) -> str:
        return f"<PriceTable {len(self.models)} models>"

    def model(self, name: str) -> ImageModel | None:
        """The model listed under ``name`` (an id or an alias), or ``None``."""
        return self._by_name.get(name)

    def learn_default(self, name: str | None) -> None:
        """Note the model the server answered a request without ``model`` with (the answer's
        ``model``): later such requests are priced at it instead of the dearest listed one.
        A name the table does not list is ignored."""
        found = self.model(name) if name else None
        if found is not None and _tiers(found):
            self._default = found

    def price(self, request: Request) -> ItemPrice:
        """What ``request`` may cost: the named tier, or the dearest the server could pick.

        Raises:
            ValidationError: (field ``model``) the model is not listed or has no price.
        """
        return self.price_of(request.model, request.quality, request.resolution, request.n)

    def price_of(
        self, model: str | None, quality: str | None, resolution: str | None, n: int | None
    ) -> ItemPrice:
        """As `price`, from the fields that set the price.

        Raises:
            ValidationError: (field ``model``) the model is not listed or has no price.
        """
        images = n or 1
        quality = quality if quality not in (None, "auto") else None
        if model is None and self._default is not None:
            candidates, label = [self._default], DEFAULT_MODEL_LABEL
        elif model is None:
            candidates = [m for m in self.models if _tiers(m)]
            label = DEFAULT_MODEL_LABEL
            if not candidates:
                raise ValidationError("model", None, "a model the price table prices")
        else:
            found = self.model(model)
            if found is None:
                names = ", ".join(m.id for m in self.models) or "none"
                raise ValidationError("model", model, f"a listed image model (listed: {names})")
            if not _tiers(found):
                raise ValidationError("model", model, "a model with a listed price")
            candidates, label = [found], found.id
        prices = {
            tier.price_per_image
            for model in candidates
            for tier in _matching(_tiers(model), quality, resolution)
        }
        return ItemPrice(
            label,
            quality or _UNKNOWN_TIER,
            resolution or _UNKNOWN_TIER,
            images,
            max(prices) * images,
            len(prices) > 1,
        )


def _matching(
    tiers: tuple[PriceTier, ...], quality: str | None, resolution: str | None
) -> tuple[PriceTier, ...]:
    """The tiers the server may bill; all of them when the request's tier is not in the
    table (a tier the table does not name cannot be priced lower than the dearest)."""
    found = tuple(
        t
        for t in tiers
        if (quality is None or t.quality == quality)
        and (resolution is None or t.resolution == resolution)
    )
    return found or tiers
