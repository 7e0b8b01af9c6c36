"""``client.images.models``: the image models and their price tables.

``GET /image-generation-models`` lists them; ``GET /image-generation-models/{id}`` reads one.
Prices come only from these answers: the SDK carries none of its own. A price is per image, in
USD ticks (``TICKS_PER_USD`` to the dollar), for one quality and one resolution.

Parsing is lenient where the server is in charge (unknown keys ignored, missing optional fields
``None``), strict where the answer would be useless: a listing without a ``models`` array, or a
model without an ``id``, raises `APIResponseError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import attrs

from .._errors import APIResponseError
from .._units import TICKS_PER_USD
from .._wire._paths import segment
from ._resource import Resource

__all__ = ["ImageModel", "ImageModels", "PriceTier", "parse_model", "parse_model_listing"]

_LIST_PATH = "/image-generation-models"


def _usd(ticks: int) -> Decimal:
    return Decimal(ticks) / TICKS_PER_USD


@attrs.frozen
class PriceTier:
    """The price of one image at one quality and resolution.

    Attributes:
        quality: ``"low"``, ``"medium"``, ``"high"`` (a string: new tiers may appear).
        resolution: ``"1k"``, ``"1.5k"``, ``"2k"``.
        price_per_image: in USD ticks (10**10 to the dollar).
    """

    quality: str
    resolution: str
    price_per_image: int

    @property
    def usd(self) -> Decimal:
        """The price per image in US dollars, exact."""
        return _usd(self.price_per_image)


@attrs.frozen
class ImageModel:
    """An image model as ``GET /image-generation-models`` describes it.

    Attributes:
        id: the model id, e.g. ``"grok-imagine-image"``.
        aliases: other names the API accepts for it.
        created: when it was created (epoch seconds), if said.
        fingerprint: the model's fingerprint, if said.
        version: its version string, if said.
        object: ``"model"``.
        owned_by: its owner, e.g. ``"xai"``.
        input_modalities: e.g. ``("text", "image")``.
        output_modalities: e.g. ``("image",)``.
        max_prompt_length: the longest prompt it takes, if said.
        image_price: the price of the default tier (medium quality at 1k) in US cents, if said.
        pricing: the price per image by quality and resolution (may be empty).
        request_id: the ``x-request-id`` of the answer it came from (for support tickets).
    """

    id: str
    aliases: tuple[str, ...] = ()
    created: int | None = None
    fingerprint: str | None = None
    version: str | None = None
    object: str | None = None
    owned_by: str | None = None
    input_modalities: tuple[str, ...] = ()
    output_modalities: tuple[str, ...] = ()
    max_prompt_length: int | None = None
    image_price: Decimal | None = None
    pricing: tuple[PriceTier, ...] = ()
    request_id: str | None = attrs.field(default=None, eq=False)

    def names(self) -> tuple[str, ...]:
        """The id followed by the aliases."""
        return (self.id, *self.aliases)

    def price(self, quality: str, resolution: str) -> PriceTier | None:
        """The tier for ``quality`` at ``resolution``, or ``None`` when the table has none."""
        for tier in self.pricing:
            if tier.quality == quality and tier.resolution == resolution:
                return tier
        return None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(v for v in value if isinstance(v, str))


def _cents(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        cents = Decimal(str(value))
    except ArithmeticError:
        return None
    return cents if cents.is_finite() else None


def _tier(raw: Any) -> PriceTier | None:
    """One row of ``pricing``; rows without a quality, resolution or integer price are dropped
    (an unreadable row must not be guessed at)."""
    if not isinstance(raw, Mapping):
        return None
    quality, resolution = _str(raw.get("quality")), _str(raw.get("resolution"))
    ticks = _int(raw.get("price_per_image"))
    if quality is None or resolution is None or ticks is None or ticks < 0:
        return None
    return PriceTier(quality, resolution, ticks)


def parse_model(
    raw: Any, where: str = "image model", *, request_id: str | None = None
) -> ImageModel:
    """An `ImageModel` from its JSON object.

    Raises:
        APIResponseError: ``raw`` is not an object or has no string ``id``.
    """
    if not isinstance(raw, Mapping):
        raise APIResponseError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    model_id = raw.get("id")
    if not isinstance(model_id, str) or not model_id:
        raise APIResponseError(f"{where}: the model has no id")
    pricing = raw.get("pricing")
    tiers = tuple(t for t in map(_tier, pricing if isinstance(pricing, list) else ()) if t)
    return ImageModel(
        id=model_id,
        aliases=_strings(raw.get("aliases")),
        created=_int(raw.get("created")),
        fingerprint=_str(raw.get("fingerprint")),
        version=_str(raw.get("version")),
        object=_str(raw.get("object")),
        owned_by=_str(raw.get("owned_by")),
        input_modalities=_strings(raw.get("input_modalities")),
        output_modalities=_strings(raw.get("output_modalities")),
        max_prompt_length=_int(raw.get("max_prompt_length")),
        image_price=_cents(raw.get("image_price")),
        pricing=tiers,
        request_id=request_id,
    )


def parse_model_listing(body: Any, *, request_id: str | None = None) -> list[ImageModel]:
    """The models of a ``GET /image-generation-models`` answer.

    Raises:
        APIResponseError: no ``models`` array, or a model that is not an object with an ``id``.
    """
    where = "GET /v1" + _LIST_PATH
    models = body.get("models") if isinstance(body, Mapping) else None
    if not isinstance(models, list):
        raise APIResponseError(f"{where}: the answer has no models array")
    return [
        parse_model(raw, f"{where}: models[{i}]", request_id=request_id)
        for i, raw in enumerate(models)
    ]


class ImageModels(Resource):
    """The image models and their prices (``client.images.models``)."""

    _label = "Image models of"

    async def list(self) -> list[ImageModel]:
        """Every image model the API key can use, with its price table.

        Raises:
            APIStatusError, APIConnectionError: as any API call.
            APIResponseError: the answer has no ``models`` array or a model has no ``id``.
        """
        answer = await self._requester.send("GET", _LIST_PATH, idempotent=True)
        with answer.reading():
            return parse_model_listing(answer.body, request_id=answer.request_id)

    async def get(self, model_id: str) -> ImageModel:
        """One image model by id or alias (the id is URL-encoded in the path).

        Raises:
            ValidationError: ``model_id`` is not a non-empty string; nothing was sent.
            NotFoundError: the API knows no such model.
            APIStatusError, APIConnectionError: as any API call.
            APIResponseError: the answer is not a model with an ``id``.
        """
        path = f"{_LIST_PATH}/{segment(model_id, 'model_id')}"
        answer = await self._requester.send("GET", path, idempotent=True)
        with answer.reading():
            return parse_model(answer.body, f"GET /v1{path}", request_id=answer.request_id)
