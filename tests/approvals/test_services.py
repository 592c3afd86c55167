"""Decisions: limits, four-eyes, reasons, the append-only record, expiry, notifications, races."""

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from threading import Barrier
from unittest import mock

import pytest
from django.core import mail
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.utils import timezone

from agentops.models import Run
from agentops.simgateway.models import ProviderRefund
from approvals.models import (
    ApprovalLimit,
    AutonomySetting,
    Decision,
    PendingAction,
    RejectReason,
    RiskPolicy,
)
from approvals.notifications import action_notify
from approvals.services import (
    ActionAlreadyDecided,
    OverApprovalLimit,
    action_approve,
    action_reject,
    actions_expire,
    approver_limit,
    autonomy_save,
    policy_save,
)
from approvals.tasks import notify_pending_action
from tests.conftest import LEAD_LIMIT_CENTS
from tests.runtime.helpers import advance

pytestmark = pytest.mark.django_db


# --- limits --------------------------------------------------------------------


def test_a_lead_may_approve_up_to_the_limit_and_not_a_cent_more(
    support_lead, make_run, make_action
):
    at = make_action(make_run(Run.Status.AWAITING_APPROVAL), amount_cents=LEAD_LIMIT_CENTS)
    over = make_action(make_run(Run.Status.AWAITING_APPROVAL), amount_cents=LEAD_LIMIT_CENTS + 1)

    assert action_approve(action=at, actor=support_lead).status == PendingAction.Status.APPROVED
    with pytest.raises(OverApprovalLimit):
        action_approve(action=over, actor=support_lead)
    over.refresh_from_db()
    assert over.status == PendingAction.Status.PENDING
    assert not over.decisions.exists()


def test_without_a_limit_in_the_currency_nobody_approves(support_lead, make_run, make_action):
    action = make_action(make_run(Run.Status.AWAITING_APPROVAL), amount_cents=100, currency="JPY")
    with pytest.raises(PermissionDenied):
        action_approve(action=action, actor=support_lead)


def test_a_group_limit_applies_and_a_user_s_own_limit_wins(django_user_model, staff_viewer):
    from django.contrib.auth.models import Group

    group = Group.objects.create(name="leads")
    staff_viewer.groups.add(group)
    ApprovalLimit.objects.create(group=group, currency="USD", max_amount_cents=30000)
    assert approver_limit(user=staff_viewer, currency="usd") == 30000
    ApprovalLimit.objects.create(user=staff_viewer, currency="USD", max_amount_cents=1000)
    assert approver_limit(user=staff_viewer, currency="USD") == 1000


# --- four eyes -----------------------------------------------------------------


def test_four_eyes_needs_two_different_approvers(support_lead, finance, make_run, make_action):
    action = make_action(make_run(Run.Status.AWAITING_APPROVAL), approvals_required=2)

    action = action_approve(action=action, actor=support_lead)
    assert action.status == PendingAction.Status.PENDING
    assert Run.objects.get(pk=action.run_id).status == Run.Status.AWAITING_APPROVAL
    with pytest.raises(ActionAlreadyDecided, match="second, different approver"):
        action_approve(action=action, actor=support_lead)

    action = action_approve(action=action, actor=finance)
    assert action.status == PendingAction.Status.APPROVED
    assert action.first_approved_by == support_lead and action.decided_by == finance
    assert list(action.decisions.values_list("verdict", flat=True)) == [
        "first_approval",
        "approved",
    ]
    assert Run.objects.get(pk=action.run_id).status == Run.Status.QUEUED


def test_the_loop_asks_for_two_approvers_above_the_four_eyes_threshold(
    make_order, submit, support_lead, finance
):
    policy = RiskPolicy(
        tool="issue_refund",
        currency="USD",
        approval_threshold_cents=5000,
        four_eyes_threshold_cents=10000,
    )
    policy_save(policy=policy, actor=None)
    order = make_order(total_cents=12900)
    run = advance(submit(f"Please refund {order.order_id}"))

    action = PendingAction.objects.get(run=run)
    assert action.approvals_required == 2
    assert action.policy_version.version == 1
    assert run.spans.get(kind="policy").output["policy_version"] == "issue_refund USD v1"
    action_approve(action=action, actor=support_lead)
    assert advance(run).status == Run.Status.AWAITING_APPROVAL
    assert not ProviderRefund.objects.exists()
    action_approve(action=action, actor=finance)
    assert advance(run).status == Run.Status.RESOLVED
    assert ProviderRefund.objects.filter(payment_ref=order.payment_ref).count() == 1


# --- rejection and the record ----------------------------------------------------------


def test_a_rejection_needs_a_comment_and_keeps_its_reason_code(support_lead, awaiting):
    code = RejectReason.objects.get(code="suspected_fraud")
    with pytest.raises(ValidationError):
        action_reject(action=awaiting, actor=support_lead, reason="  ", reason_code=code)

    action = action_reject(
        action=awaiting, actor=support_lead, reason="Third claim", reason_code=code
    )

    decision = action.decisions.get()
    assert (decision.verdict, decision.reason_code, decision.comment) == (
        "rejected",
        code,
        "Third claim",
    )
    assert decision.approver_limit_cents == LEAD_LIMIT_CENTS
    assert action.reason_code == code


def test_a_decision_records_the_policy_version_in_force_then(support_lead, awaiting):
    policy = RiskPolicy(tool="issue_refund", currency="USD", approval_threshold_cents=5000)
    policy_save(policy=policy, actor=None)
    policy.approval_threshold_cents = 6000
    policy_save(policy=policy, actor=None)

    action_approve(action=awaiting, actor=support_lead)

    assert awaiting.decisions.get().policy_version.version == 2


# --- expiry --------------------------------------------------------------------------


def test_expiry_ends_old_pending_actions_and_the_run_escalates(
    make_order, submit, enqueued_runs, django_capture_on_commit_callbacks
):
    order = make_order(total_cents=12900)
    run = advance(submit(f"Refund {order.order_id}"))
    fresh_run = advance(submit(f"Refund {make_order(total_cents=9000).order_id}"))
    PendingAction.objects.filter(run=run).update(created_at=timezone.now() - timedelta(hours=25))

    with django_capture_on_commit_callbacks(execute=True):
        assert actions_expire(older_than=timedelta(hours=24)) == 1

    action = PendingAction.objects.get(run=run)
    assert action.status == PendingAction.Status.EXPIRED
    assert action.decisions.get().verdict == "expired"
    assert enqueued_runs == [run.pk]
    run = advance(run)
    assert run.status == Run.Status.ESCALATED
    assert run.outcome_reason == "The approval request expired."
    assert not ProviderRefund.objects.exists()
    assert PendingAction.objects.get(run=fresh_run).status == PendingAction.Status.PENDING


def test_expiry_and_a_decision_cannot_both_win(support_lead, awaiting):
    PendingAction.objects.filter(pk=awaiting.pk).update(
        created_at=timezone.now() - timedelta(days=2)
    )
    action_approve(action=awaiting, actor=support_lead)

    assert actions_expire(older_than=timedelta(hours=1)) == 0
    assert Decision.objects.filter(action=awaiting).count() == 1


# --- autonomy share ---------------------------------------------------------------------


def test_tickets_outside_the_autonomy_share_go_to_a_person_before_any_model_call(
    make_order, submit, scripted
):
    autonomy_save(setting=AutonomySetting(pk=1, share_percent=0), actor=None)
    model = scripted()

    run = advance(submit("Refund ORD-1 please"))

    assert run.status == Run.Status.ESCALATED
    assert "autonomy share" in run.outcome_reason
    assert model.calls == []
    assert run.spans.get(name="autonomy_share").error_class == "policy"


# --- notifications ---------------------------------------------------------------------


def test_a_new_pending_action_is_notified_after_commit(
    make_order, submit, notified_actions, django_capture_on_commit_callbacks
):
    order = make_order(total_cents=12900)
    with django_capture_on_commit_callbacks(execute=True):
        run = advance(submit(f"Refund {order.order_id}"))
    assert notified_actions == [PendingAction.objects.get(run=run).pk]


def test_approvers_are_emailed_and_the_webhook_is_posted(
    support_lead, finance, staff_viewer, awaiting, settings
):
    settings.APPROVALS_WEBHOOK_URL = "https://hooks.example.com/T000/B000"
    with mock.patch("approvals.notifications.urllib.request.urlopen") as urlopen:
        action_notify(action=awaiting)

    assert len(mail.outbox) == 1
    assert sorted(mail.outbox[0].to) == ["finance@example.com", "lead@example.com"]
    assert "$129.00" in mail.outbox[0].subject
    assert f"/approvals/{awaiting.code}/" in mail.outbox[0].body
    request = urlopen.call_args.args[0]
    assert request.full_url == "https://hooks.example.com/T000/B000"
    assert b"$129.00" in request.data


def test_a_failing_webhook_makes_the_task_retry(support_lead, awaiting, settings):
    settings.APPROVALS_WEBHOOK_URL = "https://hooks.example.com/down"
    with (
        mock.patch(
            "approvals.notifications.urllib.request.urlopen", side_effect=OSError("refused")
        ),
        mock.patch.object(
            notify_pending_action, "retry", side_effect=RuntimeError("retry")
        ) as retry,
        pytest.raises(RuntimeError, match="retry"),
    ):
        notify_pending_action.run(awaiting.pk)
    assert retry.called


def test_a_decided_action_is_not_notified(support_lead, awaiting):
    action_approve(action=awaiting, actor=support_lead)
    action_notify(action=awaiting)
    assert mail.outbox == []


# --- races ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_twenty_approvers_at_once_make_one_decision_and_one_refund(
    make_order, submit, django_user_model
):
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL-only: SQLite serialises writers, so there is no real race")
    from tests.conftest import _limits, _user

    order = make_order(total_cents=12900)
    run = advance(submit(f"I want a refund for {order.order_id}."))
    action = PendingAction.objects.get(run=run)
    approvers = [
        _limits(
            _user(
                django_user_model,
                f"approver{n}",
                staff=True,
                perms=["approvals.decide_pendingaction"],
            ),
            100_000,
        )
        for n in range(20)
    ]
    start = Barrier(20)

    def race(user) -> str:
        try:
            start.wait()
            action_approve(action=PendingAction.objects.get(pk=action.pk), actor=user)
            return "won"
        except ActionAlreadyDecided as exc:
            assert exc.action.decided_by is not None and exc.action.decided_at is not None
            return "lost"
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(race, approvers))

    assert sorted(outcomes) == ["lost"] * 19 + ["won"]
    assert Decision.objects.filter(action=action).count() == 1
    run = advance(run)
    assert run.status == Run.Status.RESOLVED, run.outcome_reason
    assert ProviderRefund.objects.filter(payment_ref=order.payment_ref).count() == 1
    assert order.refunds.count() == 1
