"""Reads for the approvals queue."""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

from django.db.models import F

from agentops.models import Run
from approvals.models import PendingAction

RECENT_DECISIONS = 20

_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "CAD": "CA$", "AUD": "A$"}
# ISO 4217 currencies without minor units; everything else here has two decimals.
_ZERO_DECIMAL = {"JPY", "KRW", "VND", "CLP", "ISK", "HUF"}


def money_format(*, cents: int | None, currency: str) -> str:
    """An amount in minor units as a person reads it: "$129.00", "€5.50", "12.00 CHF"."""
    if cents is None:
        return "—"
    code = (currency or "").upper()
    number = f"{cents:,}" if code in _ZERO_DECIMAL else f"{Decimal(cents) / 100:,.2f}"
    symbol = _SYMBOLS.get(code)
    if symbol:
        return f"{symbol}{number}"
    return f"{number} {code}".strip()


def action_list_pending() -> list[PendingAction]:
    """The queue: actions waiting for a person, oldest first."""
    return list(
        PendingAction.objects.filter(status=PendingAction.Status.PENDING)
        .select_related("run__ticket")
        .order_by("created_at", "id")
    )


def action_list_recent(*, limit: int = RECENT_DECISIONS) -> list[PendingAction]:
    """The last decisions (and expiries), newest first."""
    return list(
        PendingAction.objects.exclude(status=PendingAction.Status.PENDING)
        .select_related("run__ticket", "decided_by")
        .order_by(F("decided_at").desc(nulls_last=True), "-id")[:limit]
    )


def action_list_for_run(*, run: Run) -> list[PendingAction]:
    return list(
        PendingAction.objects.filter(run=run).select_related("decided_by").order_by("created_at")
    )


def action_get(*, code: UUID) -> PendingAction:
    """Raises PendingAction.DoesNotExist."""
    return PendingAction.objects.select_related("run__ticket", "decided_by").get(code=code)


def action_count_pending() -> int:
    return PendingAction.objects.filter(status=PendingAction.Status.PENDING).count()
