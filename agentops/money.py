"""Amounts in minor units, as a person reads them."""

from __future__ import annotations

from decimal import Decimal

_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "CAD": "CA$", "AUD": "A$"}
# ISO 4217 currencies without minor units; everything else here has two decimals.
_ZERO_DECIMAL = {"JPY", "KRW", "VND", "CLP", "ISK", "HUF"}


def money_format(*, cents: int | None, currency: str) -> str:
    """An amount in minor units: "$129.00", "€5.50", "12.00 CHF"; "—" for none."""
    if cents is None:
        return "—"
    code = (currency or "").upper()
    number = f"{cents:,}" if code in _ZERO_DECIMAL else f"{Decimal(cents) / 100:,.2f}"
    symbol = _SYMBOLS.get(code)
    if symbol:
        return f"{symbol}{number}"
    return f"{number} {code}".strip()
