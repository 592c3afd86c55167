"""What a model call costs, from its usage and the admin's price table (USD per MTok)."""

from __future__ import annotations

from decimal import Decimal

from agentops.runtime.readonce import once

_MILLION = Decimal(1_000_000)
_QUANTUM = Decimal("0.000001")


def _price_table() -> list:
    from agentops.routing.models import ModelPrice

    return once("model_prices", lambda: list(ModelPrice.objects.all()))


def model_price(model: str):
    """The ModelPrice row for a model: exact name, else the longest matching prefix."""
    rows = [p for p in _price_table() if model == p.model or model.startswith(p.model)]
    return max(rows, key=lambda p: len(p.model), default=None)


def model_cost(model: str, usage: dict) -> Decimal:
    """Input, output, cache read and cache write tokens at the model's prices.

    A model without a price costs 0 here; the span says so (price_missing).
    """
    price = model_price(model)
    if price is None:
        return Decimal(0)
    tokens = (
        usage.get("input_tokens", 0) or 0,
        usage.get("output_tokens", 0) or 0,
        usage.get("cache_read_input_tokens", 0) or 0,
        usage.get("cache_creation_input_tokens", 0) or 0,
    )
    total = sum(Decimal(int(n)) * p for n, p in zip(tokens, price.prices, strict=True))
    return (total / _MILLION).quantize(_QUANTUM)


def usage_attributes(model: str, usage: dict) -> dict:
    """What a model span records of its usage besides input/output tokens.

    Prompt-cache tokens only when there are any: most calls (the offline model, a
    first call under the cache's minimum) have none, and every model span carries this.
    """
    attrs = {}
    for key in ("cache_read_input_tokens", "cache_creation_input_tokens"):
        tokens = int(usage.get(key, 0) or 0)
        if tokens:
            attrs[key] = tokens
    if model_price(model) is None:
        attrs["price_missing"] = True
    return attrs
