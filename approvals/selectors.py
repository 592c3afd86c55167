"""Reads for the approvals queue, the detail page and the history."""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from django.db.models import F, Q, QuerySet
from django.utils import timezone

from agentops.integrations.orders import OrderInfo, RefundInfo, get_order_directory
from agentops.models import Effect, Run
from approvals.models import Decision, PendingAction, RejectReason

RECENT_DECISIONS = 20
HISTORY_PAGE = 50


@dataclass(frozen=True)
class QueueFilters:
    tool: str = ""
    currency: str = ""
    min_cents: int | None = None
    max_cents: int | None = None
    older_than_minutes: int | None = None

    @property
    def active(self) -> bool:
        return any(
            v not in ("", None)
            for v in (
                self.tool,
                self.currency,
                self.min_cents,
                self.max_cents,
                self.older_than_minutes,
            )
        )


def action_list_pending(*, filters: QueueFilters | None = None) -> list[PendingAction]:
    """The queue: actions waiting for a person, oldest first."""
    qs = PendingAction.objects.filter(status=PendingAction.Status.PENDING)
    if filters is not None:
        qs = _filtered(qs, filters)
    return list(qs.select_related("run__ticket", "first_approved_by").order_by("created_at", "id"))


def _filtered(qs: QuerySet[PendingAction], f: QueueFilters) -> QuerySet[PendingAction]:
    if f.tool:
        qs = qs.filter(tool=f.tool)
    if f.currency:
        qs = qs.filter(currency=f.currency.upper())
    if f.min_cents is not None:
        qs = qs.filter(amount_cents__gte=f.min_cents)
    if f.max_cents is not None:
        qs = qs.filter(amount_cents__lte=f.max_cents)
    if f.older_than_minutes is not None:
        qs = qs.filter(created_at__lte=timezone.now() - timedelta(minutes=f.older_than_minutes))
    return qs


def action_queue_choices() -> dict[str, list[str]]:
    """The tools and currencies that appear in the queue, for the filter menus."""
    pending = PendingAction.objects.filter(status=PendingAction.Status.PENDING)
    return {
        "tools": sorted(set(pending.values_list("tool", flat=True))),
        "currencies": sorted(set(pending.exclude(currency="").values_list("currency", flat=True))),
    }


def action_list_recent(*, limit: int = RECENT_DECISIONS) -> list[PendingAction]:
    """The last decisions (and expiries), newest first."""
    return list(
        PendingAction.objects.exclude(status=PendingAction.Status.PENDING)
        .select_related("run__ticket", "decided_by", "reason_code")
        .order_by(F("decided_at").desc(nulls_last=True), "-id")[:limit]
    )


def action_list_decided(
    *, query: str = "", status: str = "", limit: int = HISTORY_PAGE
) -> list[PendingAction]:
    """The searchable history: by customer, order, approver, comment, reason or code."""
    qs = PendingAction.objects.exclude(status=PendingAction.Status.PENDING)
    if status:
        qs = qs.filter(status=status)
    query = query.strip()
    if query:
        match = (
            Q(run__ticket__customer_email__icontains=query)
            | Q(args__order_id__icontains=query)
            | Q(decided_by__username__icontains=query)
            | Q(reason__icontains=query)
            | Q(reason_code__label__icontains=query)
            | Q(tool__icontains=query)
        )
        with suppress(ValueError):
            match |= Q(code=UUID(query))
        qs = qs.filter(match)
    return list(
        qs.select_related("run__ticket", "decided_by", "reason_code", "first_approved_by").order_by(
            F("decided_at").desc(nulls_last=True), "-id"
        )[:limit]
    )


def action_list_for_run(*, run: Run) -> list[PendingAction]:
    return list(
        PendingAction.objects.filter(run=run).select_related("decided_by").order_by("created_at")
    )


def action_get(*, code: UUID) -> PendingAction:
    """Raises PendingAction.DoesNotExist."""
    return PendingAction.objects.select_related(
        "run__ticket", "decided_by", "first_approved_by", "reason_code", "policy_version"
    ).get(code=code)


def action_count_pending() -> int:
    return PendingAction.objects.filter(status=PendingAction.Status.PENDING).count()


def action_decisions(*, action: PendingAction) -> list[Decision]:
    return list(
        action.decisions.select_related("actor", "reason_code", "policy_version").order_by(
            "created_at", "id"
        )
    )


def action_effects(*, action: PendingAction) -> list[Effect]:
    """What followed the decision: the ledger's effects of the same tool in the run."""
    return list(
        Effect.objects.filter(run_id=action.run_id, tool=action.tool).order_by("created_at")
    )


@dataclass(frozen=True)
class ActionContext:
    order: OrderInfo | None
    previous_refunds: list[RefundInfo]


def action_context(*, action: PendingAction) -> ActionContext:
    """The order as the shop knows it now, and the customer's refunds in the last year."""
    directory = get_order_directory()
    order_id = action.args.get("order_id") if isinstance(action.args, dict) else None
    order = directory.get(order_id) if order_id else None
    refunds = directory.refunds_for_customer(
        action.run.ticket.customer_email, since=timezone.now() - timedelta(days=365)
    )
    return ActionContext(order=order, previous_refunds=refunds)


def reject_reasons() -> list[RejectReason]:
    return list(RejectReason.objects.filter(active=True))
