"""What images cost: Google's list prices per model and size, and the Batch API's half price.

Source: Google's Gemini API pricing page, read 2026-11-29 (see the README). A model missing
here has no known price, and its cost is shown as unknown rather than as zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bot.options import FLASH, IMAGEN, IMAGEN_FAST, IMAGEN_ULTRA, PRO

PRICES_SOURCE = "Google's Gemini API pricing page, read 2026-11-29"
#: The Batch API charges half of the list price.
BATCH_DISCOUNT = 0.5


@dataclass(frozen=True)
class Price:
    """List prices in USD.

    Attributes:
        image: per output image, by size (``1K`` when the model has one size).
        input_per_million: per million input tokens (text and images).
        thinking_per_million: per million thinking tokens (billed as text output).
    """

    image: Mapping[str, float]
    input_per_million: float = 0.0
    thinking_per_million: float = 0.0

    def per_image(self, size: str | None) -> float:
        return self.image.get(size or "1K", self.image.get("1K", 0.0))


PRICES: dict[str, Price] = {
    FLASH: Price(image={"1K": 0.039}, input_per_million=0.30),
    PRO: Price(image={"1K": 0.134, "2K": 0.134, "4K": 0.24}, input_per_million=2.00,
               thinking_per_million=12.00),
    IMAGEN: Price(image={"1K": 0.04, "2K": 0.04}),
    IMAGEN_ULTRA: Price(image={"1K": 0.06, "2K": 0.06}),
    IMAGEN_FAST: Price(image={"1K": 0.02}),
}


def cost(model: str, size: str | None, *, images: int, prompt_tokens: int = 0,
         thought_tokens: int = 0, batch: bool = False) -> float | None:
    """The cost in USD of what one or more requests made, or ``None`` for an unknown model."""
    price = PRICES.get(model)
    if price is None:
        return None
    total = (images * price.per_image(size)
             + prompt_tokens * price.input_per_million / 1_000_000
             + thought_tokens * price.thinking_per_million / 1_000_000)
    return total * BATCH_DISCOUNT if batch else total


def dollars(amount: float | None) -> str:
    """``$1.23``; under a cent ``$0.004``; unknown ``an unknown amount``."""
    if amount is None:
        return "an unknown amount"
    if 0 < amount < 0.01:
        return f"${amount:.3f}"
    return f"${amount:,.2f}"
