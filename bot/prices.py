"""What a turn costs: the price table (per model and size, input and text output tokens,
batch discount) and the arithmetic, in US dollars.

The table lives in configuration (``[prices]`` in the TOML file); the built-in one is
Google's published Gemini API prices as of :data:`SOURCE_DATE`. A turn's cost is taken from
what Gemini reported (its token counts) and the images it returned; before a turn runs,
:meth:`PriceTable.estimate` gives the figure a budget reservation holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.model import Usage
from bot.options import FLASH, IMAGEN, IMAGEN_FAST, IMAGEN_ULTRA, PRO

SOURCE_DATE = "2026-11-29"
SOURCE_URL = "https://ai.google.dev/gemini-api/docs/pricing"
#: Text a turn sends besides its images, for an estimate (prompt and instructions).
ESTIMATED_PROMPT_TOKENS = 300
#: Thinking and text a turn answers with, for an estimate.
ESTIMATED_TEXT_TOKENS = 600


@dataclass(frozen=True)
class ModelPrice:
    """One model's prices.

    Attributes:
        image: US dollars per generated image, by size (``1K`` for fixed-size models).
        image_tokens: output tokens Gemini counts per image, by size (to tell text apart).
        input_per_million: US dollars per million input tokens (text, images, history).
        text_output_per_million: US dollars per million text and thinking output tokens.
        input_image_tokens: tokens one reference image counts as input (for estimates).
    """

    image: Mapping[str, float]
    image_tokens: Mapping[str, int]
    input_per_million: float
    text_output_per_million: float
    input_image_tokens: int

    def image_price(self, size: str | None) -> float:
        return self.image.get(_size(size), max(self.image.values(), default=0.0))

    def tokens_per_image(self, size: str | None) -> int:
        return self.image_tokens.get(_size(size), max(self.image_tokens.values(), default=0))


DEFAULT_MODEL_PRICES: dict[str, ModelPrice] = {
    PRO: ModelPrice(image={"1K": 0.134, "2K": 0.134, "4K": 0.24},
                    image_tokens={"1K": 1120, "2K": 1120, "4K": 2000},
                    input_per_million=2.00, text_output_per_million=12.00,
                    input_image_tokens=560),
    FLASH: ModelPrice(image={"1K": 0.039}, image_tokens={"1K": 1290},
                      input_per_million=0.30, text_output_per_million=2.50,
                      input_image_tokens=1290),
    # Imagen 4 is priced per image only (no tokens, no references).
    IMAGEN: ModelPrice(image={"1K": 0.04, "2K": 0.04}, image_tokens={"1K": 0, "2K": 0},
                       input_per_million=0.0, text_output_per_million=0.0,
                       input_image_tokens=0),
    IMAGEN_ULTRA: ModelPrice(image={"1K": 0.06, "2K": 0.06}, image_tokens={"1K": 0, "2K": 0},
                             input_per_million=0.0, text_output_per_million=0.0,
                             input_image_tokens=0),
    IMAGEN_FAST: ModelPrice(image={"1K": 0.02}, image_tokens={"1K": 0},
                            input_per_million=0.0, text_output_per_million=0.0,
                            input_image_tokens=0),
}
#: The Batch API charges half of the list price (the default table's discount).
BATCH_DISCOUNT = 0.5
#: Model ids with a known list price.
PRICES = DEFAULT_MODEL_PRICES


@dataclass(frozen=True)
class Cost:
    """A turn's cost, itemized (US dollars)."""

    images: float = 0.0
    input: float = 0.0
    text_output: float = 0.0

    @property
    def total(self) -> float:
        return round(self.images + self.input + self.text_output, 6)


@dataclass(frozen=True)
class PriceTable:
    """Prices by model id; a model missing from it is priced as the dearest one listed.

    Attributes:
        models: prices by model id.
        batch_discount: the share of the price a Batch API request pays (0.5: half).
        source_date: when the prices were read off Google's page.
        source_url: where they were read.
    """

    models: Mapping[str, ModelPrice] = field(default_factory=lambda: dict(DEFAULT_MODEL_PRICES))
    batch_discount: float = 0.5
    source_date: str = SOURCE_DATE
    source_url: str = SOURCE_URL

    def price(self, model: str) -> ModelPrice:
        if model in self.models:
            return self.models[model]
        # Unknown models are not free: a budget must never be bypassed by a new model id.
        return max(self.models.values(), key=lambda p: p.image_price("4K"))

    def cost(self, model: str, size: str | None, *, images: int, usage: Usage,
             batch: bool = False) -> Cost:
        """What Gemini charges for an answer: its images, the input it read (text,
        reference images and the thread's history) and the text and thinking it wrote."""
        price = self.price(model)
        image_tokens = images * price.tokens_per_image(size)
        text_tokens = max(0, usage.output_tokens - image_tokens) + usage.thought_tokens
        share = self.batch_discount if batch else 1.0
        return Cost(images=images * price.image_price(size) * share,
                    input=usage.prompt_tokens * price.input_per_million / 1e6 * share,
                    text_output=text_tokens * price.text_output_per_million / 1e6 * share)

    def estimate(self, model: str, size: str | None, *, reference_images: int,
                 batch: bool = False) -> float:
        """A turn's likely cost before it runs: one image, its references and some text."""
        price = self.price(model)
        usage = Usage(prompt_tokens=ESTIMATED_PROMPT_TOKENS
                      + reference_images * price.input_image_tokens,
                      output_tokens=price.tokens_per_image(size) + ESTIMATED_TEXT_TOKENS)
        return self.cost(model, size, images=1, usage=usage, batch=batch).total


def _size(size: str | None) -> str:
    return (size or "1K").upper()


def prices_from_toml(table: Mapping[str, Any]) -> PriceTable:
    """The ``[prices]`` table: ``batch_discount``, ``source_date``, ``source_url`` and
    ``[prices.models."<id>"]`` tables whose keys are :class:`ModelPrice`'s fields.

    Raises:
        ValueError: an unknown key or a value of the wrong kind.
    """
    table = dict(table)
    models = dict(DEFAULT_MODEL_PRICES)
    for model_id, spec in dict(table.pop("models", {})).items():
        models[model_id] = _model_price(model_id, dict(spec), models.get(model_id))
    unknown = set(table) - {"batch_discount", "source_date", "source_url"}
    if unknown:
        raise ValueError(f"unknown keys in [prices]: {', '.join(sorted(unknown))}")
    return PriceTable(models=models,
                      batch_discount=float(table.get("batch_discount", 0.5)),
                      source_date=str(table.get("source_date", SOURCE_DATE)),
                      source_url=str(table.get("source_url", SOURCE_URL)))


def _model_price(model_id: str, spec: dict[str, Any], base: ModelPrice | None) -> ModelPrice:
    known = set(ModelPrice.__dataclass_fields__)
    unknown = set(spec) - known
    if unknown:
        raise ValueError(f"unknown keys in [prices.models.\"{model_id}\"]: "
                         f"{', '.join(sorted(unknown))}")
    if base is None and set(spec) != known:
        raise ValueError(f"[prices.models.\"{model_id}\"] is a new model: give all of "
                         f"{', '.join(sorted(known))}")
    values: dict[str, Any] = dict(base.__dict__) if base else {}
    for name, value in spec.items():
        if name == "image":
            values[name] = {_size(k): float(v) for k, v in dict(value).items()}
        elif name == "image_tokens":
            values[name] = {_size(k): int(v) for k, v in dict(value).items()}
        elif name == "input_image_tokens":
            values[name] = int(value)
        else:
            values[name] = float(value)
    return ModelPrice(**values)


def cost(model: str, size: str | None, *, images: int, prompt_tokens: int = 0,
         thought_tokens: int = 0, output_tokens: int | None = None, batch: bool = False,
         table: PriceTable | None = None) -> float | None:
    """The cost in USD of what requests made (the default table unless one is given), or
    ``None`` for a model with no known price (batch summaries say "unknown"). Without
    ``output_tokens`` the output is taken to be the images alone."""
    table = table or PriceTable()
    if model not in table.models:
        return None
    if output_tokens is None:
        output_tokens = images * table.price(model).tokens_per_image(size)
    usage = Usage(prompt_tokens=prompt_tokens, thought_tokens=thought_tokens,
                  output_tokens=output_tokens)
    return table.cost(model, size, images=images, usage=usage, batch=batch).total


def dollars(amount: float | None) -> str:
    """``$1.23``; under a cent ``$0.004``; unknown ``an unknown amount``."""
    if amount is None:
        return "an unknown amount"
    if 0 < amount < 0.01:
        return f"${amount:.3f}"
    return f"${amount:,.2f}"
