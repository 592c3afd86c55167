"""Triage: classify the ticket and choose the model that runs the loop.

This first version classifies with rules (the same reading of the ticket the
offline model uses); the decision and its reason are a span either way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from django.conf import settings

from agentops.integrations.llm.offline import parse_ticket


@dataclass(frozen=True)
class TriageDecision:
    model: str
    intent: str
    ambiguous: bool
    amount_at_stake_cents: int | None
    route_model: str
    reason: str

    def as_dict(self) -> dict:
        return asdict(self)


def triage_ticket(ticket) -> TriageDecision:
    parsed = parse_ticket(f"{ticket.subject}\n{ticket.body}")
    intent = "refund" if parsed.wants_refund else "question"
    ambiguous = parsed.wants_refund and parsed.reference is None
    reason = (
        f"intent {intent}; "
        + (f"reference {parsed.reference}" if parsed.reference else "no order reference")
        + (f"; asks for {parsed.amount_cents} cents" if parsed.amount_cents else "")
    )
    return TriageDecision(
        model="rules-v1",
        intent=intent,
        ambiguous=ambiguous,
        amount_at_stake_cents=parsed.amount_cents,
        route_model=settings.AGENT_MODEL,
        reason=reason,
    )
