"""``usage`` of an answer: the cost, and the tokens of token-billed image models."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, TypeVar

import attrs

from .._units import TICKS_PER_USD

__all__ = ["InputTokensDetails", "OutputTokensDetails", "Usage", "parse_usage"]


@attrs.frozen
class InputTokensDetails:
    """What the input tokens of a token-billed image model were (each ``None`` when not sent).

    Attributes:
        text_tokens: tokens of the prompt text.
        image_tokens: tokens of the input images.
        cached_tokens: input tokens served from cache.
    """

    text_tokens: int | None = None
    image_tokens: int | None = None
    cached_tokens: int | None = None


@attrs.frozen
class OutputTokensDetails:
    """What the output tokens of a token-billed image model were (each ``None`` when not sent).

    Attributes:
        text_tokens: tokens of text output.
        reasoning_tokens: tokens spent reasoning.
        image_tokens: tokens of the generated images.
    """

    text_tokens: int | None = None
    reasoning_tokens: int | None = None
    image_tokens: int | None = None


@attrs.frozen
class Usage:
    """What a request cost, as the answer's ``usage`` reports it.

    Every field is ``None`` when the answer leaves it out; token counts are sent only for
    token-billed image models.

    Attributes:
        cost_in_usd_ticks: the cost as the API reports it (1 USD = 10**10 ticks), or ``None``.
        input_tokens: tokens read (prompt and input images).
        input_tokens_details: how ``input_tokens`` divide (`InputTokensDetails`).
        output_tokens: tokens produced.
        output_tokens_details: how ``output_tokens`` divide (`OutputTokensDetails`).
        total_tokens: input and output tokens together.
    """

    cost_in_usd_ticks: int | None = None
    input_tokens: int | None = None
    input_tokens_details: InputTokensDetails | None = None
    output_tokens: int | None = None
    output_tokens_details: OutputTokensDetails | None = None
    total_tokens: int | None = None

    @property
    def cost_usd(self) -> Decimal | None:
        """The cost in US dollars, exact (``Decimal``), or ``None`` when not reported."""
        if self.cost_in_usd_ticks is None:
            return None
        return Decimal(self.cost_in_usd_ticks) / TICKS_PER_USD


_D = TypeVar("_D", InputTokensDetails, OutputTokensDetails)


def _count(value: Any) -> int | None:
    # A count in an unexpected form is dropped, never the answer with it.
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _details(value: Any, cls: type[_D]) -> _D | None:
    if not isinstance(value, Mapping):
        return None
    return cls(**{f.name: _count(value.get(f.name)) for f in attrs.fields(cls)})


def parse_usage(value: Any) -> Usage | None:
    """The `Usage` of an answer's ``usage`` (``None`` when absent or not an object)."""
    if not isinstance(value, Mapping):
        return None
    return Usage(
        cost_in_usd_ticks=_count(value.get("cost_in_usd_ticks")),
        input_tokens=_count(value.get("input_tokens")),
        input_tokens_details=_details(value.get("input_tokens_details"), InputTokensDetails),
        output_tokens=_count(value.get("output_tokens")),
        output_tokens_details=_details(value.get("output_tokens_details"), OutputTokensDetails),
        total_tokens=_count(value.get("total_tokens")),
    )
