"""Reconciliation: the effect ledger's refunds against the payment provider's own records.

Four lists (and the report is clean when the last three are empty):

- matched: a succeeded ledger refund that the provider holds, same refund and amount;
- provider_only: a provider refund the ledger does not hold as succeeded (no ledger
  row, a failed one, an outcome still unknown, or another amount);
- ledger_only: a succeeded ledger refund the provider does not hold;
- duplicates: more than one provider refund for the same ticket and order.

Matching is by the ledger key, which every refund carries to the provider (as the
idempotency key, and in Stripe's metadata). It works with either gateway.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from agentops.integrations.payments import GatewayRefund, PaymentGateway, get_payment_gateway
from agentops.models import Effect

REFUND_TOOL = "issue_refund"


@dataclass(frozen=True)
class Line:
    ledger_key: str
    ticket: str
    order: str
    amount_cents: int | None
    currency: str
    refund_ids: tuple[str, ...] = ()
    ledger_status: str = ""
    note: str = ""


@dataclass
class Report:
    since: datetime | None
    provider: str
    matched: list[Line] = field(default_factory=list)
    provider_only: list[Line] = field(default_factory=list)
    ledger_only: list[Line] = field(default_factory=list)
    duplicates: list[Line] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.provider_only or self.ledger_only or self.duplicates)

    @property
    def counts(self) -> dict[str, int]:
        return {
            "matched": len(self.matched),
            "provider_only": len(self.provider_only),
            "ledger_only": len(self.ledger_only),
            "duplicates": len(self.duplicates),
        }


def _ticket_order(key: str) -> tuple[str, str]:
    """refund:<ticket>:<order> → (ticket, order)."""
    parts = key.split(":", 2)
    return (parts[1], parts[2]) if len(parts) == 3 else ("", "")


def _line_from_refund(refund: GatewayRefund, *, status: str = "", note: str = "") -> Line:
    ticket, order = _ticket_order(refund.ledger_key or "")
    return Line(
        ledger_key=refund.ledger_key or "",
        ticket=refund.metadata.get("ticket", ticket),
        order=refund.metadata.get("order", order),
        amount_cents=refund.amount_cents,
        currency=refund.currency,
        refund_ids=(refund.refund_id,),
        ledger_status=status,
        note=note,
    )


def reconciliation_report(
    *, since: datetime | None = None, gateway: PaymentGateway | None = None
) -> Report:
    gateway = gateway or get_payment_gateway()
    refunds = gateway.list_refunds(since=since)
    by_key: dict[str, list[GatewayRefund]] = defaultdict(list)
    for refund in refunds:
        if refund.ledger_key:
            by_key[refund.ledger_key].append(refund)

    ledger = Effect.objects.filter(tool=REFUND_TOOL)
    window = ledger.filter(created_at__gte=since) if since else ledger
    effects = {e.idempotency_key: e for e in window}
    # Provider refunds in the window whose ledger row is older still have a row.
    effects.update({e.idempotency_key: e for e in ledger.filter(idempotency_key__in=by_key)})

    report = Report(since=since, provider=getattr(gateway, "name", ""))
    for refund in refunds:
        effect = effects.get(refund.ledger_key or "")
        if effect is None:
            report.provider_only.append(
                _line_from_refund(refund, note="no ledger row for this refund")
            )
        elif effect.status != Effect.Status.SUCCEEDED:
            report.provider_only.append(
                _line_from_refund(
                    refund,
                    status=effect.status,
                    note=f"the ledger holds this refund as {effect.status}",
                )
            )
        elif effect.request.get("amount_cents") != refund.amount_cents:
            report.provider_only.append(
                _line_from_refund(
                    refund,
                    status=effect.status,
                    note=f"the ledger says {effect.request.get('amount_cents')}",
                )
            )
        elif effect.provider_ref and effect.provider_ref != refund.refund_id:
            report.provider_only.append(
                _line_from_refund(
                    refund,
                    status=effect.status,
                    note=f"the ledger names refund {effect.provider_ref}",
                )
            )
        else:
            report.matched.append(_line_from_refund(refund, status=effect.status))

    held = {r.refund_id for r in refunds}
    for key, effect in effects.items():
        if effect.status != Effect.Status.SUCCEEDED:
            continue
        if key in by_key and (not effect.provider_ref or effect.provider_ref in held):
            continue
        ticket, order = _ticket_order(key)
        report.ledger_only.append(
            Line(
                ledger_key=key,
                ticket=ticket,
                order=effect.request.get("order_id", order),
                amount_cents=effect.request.get("amount_cents"),
                currency=effect.request.get("currency", ""),
                refund_ids=(effect.provider_ref,) if effect.provider_ref else (),
                ledger_status=effect.status,
                note="the provider does not hold this refund",
            )
        )

    groups: dict[tuple[str, str], list[GatewayRefund]] = defaultdict(list)
    for refund in refunds:
        line = _line_from_refund(refund)
        if line.ticket or line.order:
            groups[(line.ticket, line.order)].append(refund)
    for (ticket, order), group in groups.items():
        if len(group) > 1:
            report.duplicates.append(
                Line(
                    ledger_key=group[0].ledger_key or "",
                    ticket=ticket,
                    order=order,
                    amount_cents=sum(r.amount_cents for r in group),
                    currency=group[0].currency,
                    refund_ids=tuple(r.refund_id for r in group),
                    note=f"{len(group)} refunds for one ticket and order",
                )
            )
    return report
