"""Reads for the approvals queue."""

from __future__ import annotations

from uuid import UUID

from django.db.models import F

from agentops.models import Run
from approvals.models import PendingAction

RECENT_DECISIONS = 20


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
