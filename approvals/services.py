"""Writes of the approvals app: proposals, decisions, expiry, policy changes.

Each decision is one conditional UPDATE; its Decision row is written in the
same transaction, so a race has exactly one winner and one record.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Max
from django.forms.models import model_to_dict
from django.utils import timezone

from agentops.models import Run
from approvals.models import (
    ApprovalLimit,
    AutonomySetting,
    Decision,
    PendingAction,
    PolicyChange,
    RejectReason,
    RiskPolicy,
)
from approvals.policy import PolicyDecision, policy_for, policy_version_in_force

logger = logging.getLogger(__name__)

DECIDE_PERMISSION = "approvals.decide_pendingaction"


class ActionAlreadyDecided(Exception):
    """Someone (or expiry) decided first. `action` is the row as it now stands."""

    def __init__(self, action: PendingAction, message: str = "") -> None:
        super().__init__(
            message or f"Already {action.status} by {action.decided_by or 'the system'}"
        )
        self.action = action


class OverApprovalLimit(PermissionDenied):
    """The amount is above what this person may approve in that currency."""


# --- limits ---------------------------------------------------------------------


def approver_limit(*, user, currency: str) -> int | None:
    """The most `user` may approve in `currency` (minor units); None: nothing at all.

    Superusers have no limit (they can edit the limits anyway). A user's own row
    wins over their groups'; among groups the highest applies.
    """
    if user is None or not user.is_active:
        return None
    currency = currency.upper()
    own = ApprovalLimit.objects.filter(user=user, currency=currency).first()
    if own is not None:
        return own.max_amount_cents
    groups = Group.objects.filter(user=user)
    best = ApprovalLimit.objects.filter(group__in=groups, currency=currency).aggregate(
        m=Max("max_amount_cents")
    )["m"]
    if best is None and user.is_superuser:
        return 2**31 - 1
    return best


def action_within_limit(*, action: PendingAction, user) -> bool:
    if action.amount_cents is None:
        return True
    limit = approver_limit(user=user, currency=action.currency)
    return limit is not None and action.amount_cents <= limit


# --- proposals ------------------------------------------------------------------


def action_propose(
    *, run: Run, tool_use_id: str, tool: str, resolved, decision: PolicyDecision, reasoning: str
) -> PendingAction:
    """Hold a tool call for a person; approvers are told after commit, never blocking the run."""
    action = PendingAction.objects.create(
        run=run,
        tool_use_id=tool_use_id,
        tool=tool,
        args=resolved.args,
        amount_cents=resolved.amount_cents,
        currency=resolved.currency,
        rules=decision.as_list(),
        reasoning=reasoning,
        policy_version=decision.policy_version,
        approvals_required=decision.approvals_required,
    )
    action_notify_on_commit(action_id=action.pk)
    return action


def action_notify_on_commit(*, action_id: int) -> None:
    from approvals.tasks import notify_pending_action

    # robust: a broker that is down is logged, and the run goes on parked.
    transaction.on_commit(lambda: notify_pending_action.delay(action_id), robust=True)


# --- decisions ------------------------------------------------------------------


def action_approve(*, action: PendingAction, actor, reason: str = "") -> PendingAction:
    """Approve; above the four-eyes threshold the first approval waits for a second person."""
    _check_decider(actor)
    limit = approver_limit(user=actor, currency=action.currency)
    if action.amount_cents is not None and (limit is None or action.amount_cents > limit):
        raise OverApprovalLimit(
            f"{action.amount_cents} {action.currency} is above your approval limit."
        )
    now = timezone.now()
    comment = reason.strip()
    with transaction.atomic():
        pending = PendingAction.objects.filter(pk=action.pk, status=PendingAction.Status.PENDING)
        if action.approvals_required >= 2:
            first = pending.filter(first_approved_by__isnull=True).update(
                first_approved_by=actor, first_approved_at=now
            )
            if first:
                _record(action, actor, Decision.Verdict.FIRST_APPROVAL, comment, limit, now)
                action.refresh_from_db()
                return action
            won = (
                pending.filter(first_approved_by__isnull=False)
                .exclude(first_approved_by=actor)
                .update(
                    status=PendingAction.Status.APPROVED,
                    decided_by=actor,
                    decided_at=now,
                    reason=comment,
                )
            )
        else:
            won = pending.update(
                status=PendingAction.Status.APPROVED,
                decided_by=actor,
                decided_at=now,
                reason=comment,
            )
        if not won:
            _lost(action, actor)
        _record(action, actor, Decision.Verdict.APPROVED, comment, limit, now)
        _requeue(action, now)
    action.refresh_from_db()
    return action


def action_reject(
    *, action: PendingAction, actor, reason: str, reason_code: RejectReason | None = None
) -> PendingAction:
    """Reject with a comment (the agent reads it) and, from the web, a reason code."""
    if not reason or not reason.strip():
        raise ValidationError({"reason": "Say why the action is rejected."})
    _check_decider(actor)
    now = timezone.now()
    comment = reason.strip()
    with transaction.atomic():
        won = PendingAction.objects.filter(
            pk=action.pk, status=PendingAction.Status.PENDING
        ).update(
            status=PendingAction.Status.REJECTED,
            decided_by=actor,
            decided_at=now,
            reason=comment,
            reason_code=reason_code,
        )
        if not won:
            _lost(action, actor)
        limit = approver_limit(user=actor, currency=action.currency)
        _record(action, actor, Decision.Verdict.REJECTED, comment, limit, now, reason_code)
        _requeue(action, now)
    action.refresh_from_db()
    return action


def actions_expire(*, older_than: timedelta, now=None) -> int:
    """Expire pending actions older than `older_than`; their runs resume and escalate."""
    now = now or timezone.now()
    expired = 0
    candidates = PendingAction.objects.filter(
        status=PendingAction.Status.PENDING, created_at__lt=now - older_than
    ).values_list("pk", flat=True)
    for pk in list(candidates):
        with transaction.atomic():
            won = PendingAction.objects.filter(pk=pk, status=PendingAction.Status.PENDING).update(
                status=PendingAction.Status.EXPIRED,
                decided_at=now,
                reason=f"No decision within {_duration_text(older_than)}.",
            )
            if not won:
                continue  # a person decided meanwhile
            action = PendingAction.objects.get(pk=pk)
            _record(action, None, Decision.Verdict.EXPIRED, action.reason, None, now)
            _requeue(action, now)
            expired += 1
    return expired


def _duration_text(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:g} hours" if hours >= 1 else f"{delta.total_seconds():g} seconds"


def _check_decider(actor) -> None:
    if actor is None or not actor.is_active or not actor.has_perm(DECIDE_PERMISSION):
        raise PermissionDenied("You may not decide pending actions.")


def _lost(action: PendingAction, actor) -> None:
    now = PendingAction.objects.select_related("decided_by", "first_approved_by").get(pk=action.pk)
    if now.status == PendingAction.Status.PENDING and now.first_approved_by_id == actor.pk:
        raise ActionAlreadyDecided(
            now,
            "You already approved this; a second, different approver must approve it too.",
        )
    raise ActionAlreadyDecided(now)


def _record(action, actor, verdict, comment, limit, now, reason_code=None) -> Decision:
    policy = policy_for(tool=action.tool, currency=action.currency)
    return Decision.objects.create(
        action_id=action.pk,
        actor=actor,
        verdict=verdict,
        reason_code=reason_code,
        comment=comment,
        policy_version=policy_version_in_force(policy),
        approver_limit_cents=limit,
        created_at=now,
    )


def _requeue(action: PendingAction, now) -> None:
    """The parked run becomes runnable again; the worker applies the decision."""
    Run.objects.filter(pk=action.run_id, status=Run.Status.AWAITING_APPROVAL).update(
        status=Run.Status.QUEUED, updated_at=now
    )
    from agentops.services import run_enqueue_on_commit

    run_enqueue_on_commit(run_id=action.run_id)


# --- policy changes -------------------------------------------------------------------

_NOT_POLICY = {"id", "version", "updated_at"}


def _values(obj) -> dict:
    return {k: v for k, v in model_to_dict(obj).items() if k not in _NOT_POLICY}


def policy_save(*, policy: RiskPolicy, actor) -> PolicyChange | None:
    """Save an edited policy and keep the change (who, when, old, new). None if nothing changed."""
    with transaction.atomic():
        old = None
        if policy.pk is not None:
            current = RiskPolicy.objects.select_for_update().get(pk=policy.pk)
            old = _values(current)
            if old == _values(policy):
                return None
            policy.version = current.version
        policy.version += 1
        policy.save()
        return PolicyChange.objects.create(
            subject=PolicyChange.Subject.RISK_POLICY,
            policy=policy,
            label=f"{policy.tool} {policy.currency or '(any)'}",
            version=policy.version,
            changed_by=actor,
            old=old,
            new=_values(policy),
        )


def autonomy_save(*, setting: AutonomySetting, actor) -> PolicyChange | None:
    with transaction.atomic():
        old = None
        current = AutonomySetting.objects.select_for_update().filter(pk=setting.pk).first()
        if current is not None:
            old = _values(current)
            if old == _values(setting):
                return None
            setting.version = current.version
        setting.version += 1
        setting.save()
        return PolicyChange.objects.create(
            subject=PolicyChange.Subject.AUTONOMY,
            label="autonomy share",
            version=setting.version,
            changed_by=actor,
            old=old,
            new=_values(setting),
        )
