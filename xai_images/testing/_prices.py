"""The fake's image models and their prices (``FakeSettings.models``), and what a body costs.

The defaults follow the shape of xAI's listing (``GET /v1/image-generation-models``) with round
numbers; a test sets its own with ``FakeXAIServer(models=[FakeModel(...), ...])``. The SDK itself
carries no price: it reads this listing, as it reads the live one.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

__all__ = [
    "DEFAULT_MODELS",
    "FakeModel",
    "find_model",
    "unknown_model_message",
]

_CENT = 100_000_000  # USD ticks in a US cent
_QUALITIES = ("low", "medium", "high")
_RESOLUTIONS = ("1k", "1.5k", "2k")


def _prices(value: Mapping[tuple[str, str], int]) -> dict[tuple[str, str], int]:
    prices = dict(value)
    if not prices or any(not isinstance(t, int) or t < 0 for t in prices.values()):
        raise ValueError("a FakeModel needs at least one price, each an int >= 0 (USD ticks)")
    return prices


@attrs.frozen
class FakeModel:
    """An image model of the fake server and its price table.

    Attributes:
        id: the model id.
        prices: USD ticks per image by ``(quality, resolution)``.
        aliases: other names the fake accepts for it.
        auto_generate / auto_edit: the quality billed for a generation / an edit whose
            ``quality`` is ``auto`` or unset.
        default_resolution: the resolution billed when the request sets none.
    """

    id: str
    prices: dict[tuple[str, str], int] = attrs.field(converter=_prices)
    aliases: tuple[str, ...] = ()
    auto_generate: str = "low"
    auto_edit: str = "medium"
    default_resolution: str = "1k"

    def ticks_per_image(self, body: Mapping[str, Any], *, edit: bool) -> int:
        """The price of one image of ``body``: the tier served, else the dearest listed."""
        quality = body.get("quality")
        if quality in (None, "auto"):
            quality = self.auto_edit if edit else self.auto_generate
        resolution = body.get("resolution") or self.default_resolution
        price = self.prices.get((quality, resolution))
        return price if price is not None else max(self.prices.values())

    def to_json(self) -> dict[str, Any]:
        """The model as the listing shows it."""
        default = self.prices.get(("medium", "1k"), max(self.prices.values()))
        return {
            "id": self.id,
            "aliases": list(self.aliases),
            "created": 1_767_225_600,
            "fingerprint": f"fp_{zlib.crc32(self.id.encode()):08x}",
            "version": "1.0.0",
            "object": "model",
            "owned_by": "xai",
            "input_modalities": ["text", "image"],
            "output_modalities": ["image"],
            "max_prompt_length": 10_000,
            "image_price": default / _CENT,
            "pricing": [
                {"price_per_image": ticks, "quality": quality, "resolution": resolution}
                for (quality, resolution), ticks in self.prices.items()
            ],
        }


def _table(base: int, steps: Sequence[int], scale: Sequence[float]) -> dict[tuple[str, str], int]:
    return {
        (quality, resolution): int(base * step * factor)
        for quality, step in zip(_QUALITIES, steps, strict=True)
        for resolution, factor in zip(_RESOLUTIONS, scale, strict=True)
    }


DEFAULT_MODELS: tuple[FakeModel, ...] = (
    # One price for every tier, as the first image model has.
    FakeModel(
        "grok-imagine-image",
        {(q, r): 2 * _CENT for q in _QUALITIES for r in ("1k", "2k")},
        aliases=("grok-imagine-image-latest",),
        auto_generate="medium",
        auto_edit="medium",
    ),
    # Priced by quality and resolution: low 1k is $0.04, high 2k $0.24.
    FakeModel("grok-imagine-image-2.0", _table(4 * _CENT, (1, 2, 3), (1, 1.5, 2))),
)
"""The models the fake lists unless told otherwise."""


def find_model(models: Sequence[FakeModel], name: str) -> FakeModel | None:
    """The model listed under ``name`` (id or alias), or ``None``."""
    for model in models:
        if name == model.id or name in model.aliases:
            return model
    return None


def unknown_model_message(name: str) -> str:
    """The refusal of a model the fake does not list, as xAI words it."""
    return f"The model {name} does not exist or your team does not have access to it."
