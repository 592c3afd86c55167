"""Decisions on pending actions. Each decision is one conditional UPDATE."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from agentops.models import Run
from approvals.models import PendingAction

DECIDE_PERMISSION = "approvals.decide_pendingaction"


class ActionAlreadyDecided(Exception):
    """Someone (or expiry) decided first. `action` is the row as it now stands."""

    def __init__(self, action: PendingAction) -> None:
        super().__init__(f"Already {action.status} by {action.decided_by or 'the system'}")
        self.action = action


def action_approve(*, action: PendingAction, actor, reason: str = "") -> PendingAction:
    return _decide(action=action, actor=actor, status=PendingAction.Status.APPROVED, reason=reason)


def action_reject(*, action: PendingAction, actor, reason: str) -> PendingAction:
    if not reason or not reason.strip():
        raise ValidationError({"reason": "Say why the action is rejected."})
    return _decide(action=action, actor=actor, status=PendingAction.Status.REJECTED, reason=reason)


def _decide(*, action: PendingAction, actor, status: str, reason: str) -> PendingAction:
    if actor is None or not actor.is_active or not actor.has_perm(DECIDE_PERMISSION):
        raise PermissionDenied("You may not decide pending actions.")
    now = timezone.now()
    with transaction.atomic():
        won = PendingAction.objects.filter(
            pk=action.pk, status=PendingAction.Status.PENDING
        ).update(status=status, decided_by=actor, decided_at=now, reason=reason.strip())
        if not won:
            raise ActionAlreadyDecided(
                PendingAction.objects.select_related("decided_by").get(pk=action.pk)
            )
        # The parked run becomes runnable again; the worker applies the decision.
        Run.objects.filter(pk=action.run_id, status=Run.Status.AWAITING_APPROVAL).update(
            status=Run.Status.QUEUED, updated_at=now
        )
        from agentops.services import run_enqueue_on_commit

        run_enqueue_on_commit(run_id=action.run_id)
    action.refresh_from_db()
    return action
