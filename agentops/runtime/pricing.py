"""What a model call costs, from its usage. Prices in USD per million tokens."""

from __future__ import annotations

from decimal import Decimal

# input, output, cache read, cache write (5 minute); list prices.
PRICES: dict[str, tuple[Decimal, Decimal, Decimal, Decimal]] = {
    "claude-haiku-4-5": (Decimal("1"), Decimal("5"), Decimal("0.10"), Decimal("1.25")),
    "claude-sonnet-4-5": (Decimal("3"), Decimal("15"), Decimal("0.30"), Decimal("3.75")),
    "claude-opus-4-5": (Decimal("5"), Decimal("25"), Decimal("0.50"), Decimal("6.25")),
}
_MILLION = Decimal(1_000_000)


def model_cost(model: str, usage: dict) -> Decimal:
    prices = next((p for name, p in PRICES.items() if model.startswith(name)), None)
    if prices is None:
        return Decimal(0)  # the offline model, and models without a price yet
    tokens = (
        usage.get("input_tokens", 0),
        usage.get("output_tokens", 0),
        usage.get("cache_read_input_tokens", 0) or 0,
        usage.get("cache_creation_input_tokens", 0) or 0,
    )
    total = sum(Decimal(int(n)) * price for n, price in zip(tokens, prices, strict=True))
    return (total / _MILLION).quantize(Decimal("0.000001"))
