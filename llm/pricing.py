"""Cost of provider calls in USD from a per-model price table.

Prices are USD per million tokens (input, output): each provider's spec declares its models'
prices from the provider's public price page (:mod:`llm.providers.specs`); override or extend
them with the ``LLM_PRICES`` setting (JSON ``{"model": [in, out]}``).
Batch calls cost :data:`BATCH_DISCOUNT` of the realtime price where the provider says so.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings

from llm.providers import specs

BATCH_DISCOUNT = Decimal("0.5")
_MILLION = Decimal(1_000_000)


def default_prices() -> dict[str, tuple[float, float]]:
    """Model -> (input, output) USD per million tokens, as the providers' specs declare them."""
    return {model: pair for spec in specs.PROVIDER_SPECS for model, pair in spec.prices.items()}


def price_table() -> dict[str, tuple[float, float]]:
    """The effective table: the specs' prices overridden by ``settings.LLM_PRICES``."""
    table = default_prices()
    for model, pair in (settings.LLM_PRICES or {}).items():
        table[str(model)] = (float(pair[0]), float(pair[1]))
    return table


def call_cost(model: str, input_tokens: int, output_tokens: int, *, batch: bool = False) -> Decimal:
    """USD cost of one call, rounded to 6 decimals; 0 for a model with no known price.

    A versioned model name ("gemini-2.5-flash-001") falls back to the longest known prefix.
    """
    table = price_table()
    price = table.get(model)
    if price is None:
        prefixes = [m for m in table if model.startswith(m)]
        price = table[max(prefixes, key=len)] if prefixes else (0.0, 0.0)
    cost = (
        Decimal(input_tokens) * Decimal(str(price[0]))
        + Decimal(output_tokens) * Decimal(str(price[1]))
    ) / _MILLION
    if batch:
        cost *= BATCH_DISCOUNT
    return cost.quantize(Decimal("0.000001"))
