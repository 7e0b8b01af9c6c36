"""``usage`` of an answer: the cost, and the tokens of token-billed image models.

Read by the one converter (``_convert.py``) and its leniency rule: a count in an unexpected
form, or details that are not an object, become ``None``; never the answer with them.
"""

from __future__ import annotations

from decimal import Decimal

import attrs

from .._units import TICKS_PER_USD

__all__ = ["InputTokensDetails", "OutputTokensDetails", "Usage"]


@attrs.frozen
class _TokenCounts:
    """The token counts input and output details both have (each ``None`` when not sent)."""

    text_tokens: int | None = None
    image_tokens: int | None = None


@attrs.frozen
class InputTokensDetails(_TokenCounts):
    """What the input tokens of a token-billed image model were (each ``None`` when not sent).

    Attributes:
        text_tokens: tokens of the prompt text.
        image_tokens: tokens of the input images.
        cached_tokens: input tokens served from cache.
    """

    cached_tokens: int | None = None


@attrs.frozen
class OutputTokensDetails(_TokenCounts):
    """What the output tokens of a token-billed image model were (each ``None`` when not sent).

    Attributes:
        text_tokens: tokens of text output.
        image_tokens: tokens of the generated images.
        reasoning_tokens: tokens spent reasoning.
    """

    reasoning_tokens: int | None = None


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
