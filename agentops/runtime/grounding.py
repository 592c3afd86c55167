"""A reply is sent only if it is consistent with what really happened.

A reply that claims a refund the ledger does not hold, or names another amount
than the ledger holds, is held for a person instead of being sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import Decimal

from agentops.db import hot
from agentops.models import Effect

_NEGATION = re.compile(
    r"(?i)\b(not|unable|can't|cannot|couldn't|could not|won't|no longer|wasn't|isn't|haven't|"
    r"hasn't|didn't|may not|might not|if)\b"
)
# Within one sentence: any character but an end of sentence, though a point between
# digits is a decimal point ("Your refund of $50.00 has been processed").
_SAME_SENTENCE = r"(?:[^.!?\n]|(?<=\d)\.(?=\d))*"
_CLAIM = re.compile(
    r"(?i)(\brefund(ed)?\b" + _SAME_SENTENCE + r"\b(issued|processed|completed|approved|sent|"
    r"on its way|been made|gone through)\b|\b(issued|processed|completed|made|sent|approved)\b"
    + _SAME_SENTENCE
    + r"\brefund\b|\bhave refunded\b|\bhas been refunded\b|\bwe refunded\b|\bI refunded\b|"
    r"\bI've refunded\b|\bwe've refunded\b)"
)
_AMOUNT = re.compile(
    r"(?:[$€£]\s?(\d[\d,]*(?:\.\d{1,2})?))|(?:(\d[\d,]*\.\d{2})\s?(?:USD|EUR|GBP))"
)


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?\n])\s+", text) if s.strip()]


def claimed_refund_sentences(body: str) -> list[str]:
    """Sentences that state, without negation, that a refund happened."""
    return [s for s in _sentences(body) if _CLAIM.search(s) and not _NEGATION.search(s)]


def _amounts_cents(text: str) -> set[int]:
    found = set()
    for match in _AMOUNT.finditer(text):
        raw = (match.group(1) or match.group(2)).replace(",", "")
        found.add(int(Decimal(raw) * 100))
    return found


def reply_hold_reason(
    *, body: str, ticket_id: int, also_refunded_cents: Iterable[int] = ()
) -> str | None:
    """Why this reply must not be sent, or None if it is grounded in the ledger.

    `also_refunded_cents`: refunds a dry run would have made, which it may speak of.
    """
    claims = claimed_refund_sentences(body)
    if not claims:
        return None
    results = hot.values_where(
        Effect,
        "result",
        {"ticket_id": ticket_id, "tool": "issue_refund", "status": Effect.Status.SUCCEEDED},
    )
    refunded = [r.get("amount_cents") for r in results if r] + list(also_refunded_cents)
    if not refunded:
        return (
            "The reply says a refund was made, but the ledger holds no completed refund "
            f"for this ticket: {claims[0]!r}"
        )
    named = set().union(*(_amounts_cents(s) for s in claims))
    unknown = named - set(refunded) - {sum(refunded)}
    if unknown:
        return (
            f"The reply names a refund of {sorted(unknown)} cents, but the ledger holds "
            f"{sorted(refunded)} cents for this ticket."
        )
    return None
