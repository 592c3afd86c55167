"""Redaction applied to every payload before it is stored in a span.

Secrets never reach the database: API keys, bearer tokens and card numbers
(Luhn-checked, so order ids and tracking numbers are left alone), and whatever
the TRACE_REDACT_PATTERNS setting adds (regular expressions, checked at start-up).
"""

from __future__ import annotations

import re
from functools import lru_cache

from django.conf import settings

_SECRET_PATTERNS = [
    re.compile(
        r"\b(sk-ant-[A-Za-z0-9_\-]{8,}|sk_(?:live|test)_[A-Za-z0-9]{8,}|aot_[A-Za-z0-9_\-]{16,})"
    ),
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/\-]{8,}=*"),
]
# A run of 13-19 digits, optionally grouped by spaces or dashes, that is a token of its
# own: not glued to letters, digits or dashes on either side, so the digit groups of a
# UUID ("86384151-8597-4527-b818-...") inside an idempotency key are never taken for one.
_CARD_CANDIDATE = re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])")


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _redact_cards(text: str) -> str:
    def replace(match: re.Match) -> str:
        digits = re.sub(r"\D", "", match.group(0))
        if 13 <= len(digits) <= 19 and _luhn_ok(digits):
            return "[REDACTED card]"
        return match.group(0)

    return _CARD_CANDIDATE.sub(replace, text)


@lru_cache(maxsize=8)
def _configured(patterns: tuple[str, ...]) -> list[re.Pattern]:
    return [re.compile(p) for p in patterns]


# Where any built-in pattern could begin. Most strings of a run (names, ids, the
# model's replies) have none, and one search of this is cheaper than every pattern.
_MAYBE_SECRET = re.compile(r"sk-ant-|sk_live_|sk_test_|aot_|(?i:bearer)\s|\d(?:[ -]?\d){12}")


def redact_text(text: str) -> str:
    maybe = _MAYBE_SECRET.search(text) is not None
    if maybe:
        for pattern in _SECRET_PATTERNS:
            text = pattern.sub("[REDACTED secret]", text)
    for pattern in _configured(tuple(settings.TRACE_REDACT_PATTERNS)):
        text = pattern.sub("[REDACTED]", text)
    return _redact_cards(text) if maybe else text


def redact(value):
    """Return a copy of a JSON-like value with secrets replaced in every string."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value
