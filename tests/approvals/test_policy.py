"""Every rule of the risk policy, at its boundaries, and the history of its changes."""

from datetime import timedelta

import pytest
from django.utils import timezone

from agentops.shop.directory import ShopOrderDirectory
from agentops.shop.models import Order, Refund
from approvals.models import AutonomySetting, PolicyChange, RiskPolicy
from approvals.policy import (
    APPROVAL,
    AUTO,
    BLOCK,
    autonomy_check,
    policy_evaluate,
    ticket_bucket,
)
from approvals.services import autonomy_save, policy_save

pytestmark = pytest.mark.django_db


def make_policy(**fields) -> RiskPolicy:
    defaults = {"tool": "issue_refund", "currency": "USD", "approval_threshold_cents": 5000}
    defaults.update(fields)
    policy = RiskPolicy(**defaults)
    policy_save(policy=policy, actor=None)
    return policy


def evaluate(amount, **kwargs):
    return policy_evaluate(tool="issue_refund", amount_cents=amount, currency="USD", **kwargs)


def rule(decision, name):
    return next(r for r in decision.rules if r.rule == name)


@pytest.mark.parametrize(
    ("amount", "outcome", "approvals"),
    [
        (5000, AUTO, 1),
        (5001, APPROVAL, 1),
        (20000, APPROVAL, 1),
        (20001, APPROVAL, 2),
        (50000, APPROVAL, 2),
        (50001, BLOCK, 1),
    ],
)
def test_amounts_run_alone_need_one_or_two_people_or_are_blocked(amount, outcome, approvals):
    make_policy(four_eyes_threshold_cents=20000, block_above_cents=50000)

    decision = evaluate(amount)

    assert decision.outcome == outcome
    assert decision.approvals_required == approvals


def test_the_ceiling_rule_states_both_amounts():
    make_policy(block_above_cents=50000)

    assert rule(evaluate(50001), "hard_ceiling").detail == "$500.01 > hard ceiling $500.00"
    assert rule(evaluate(50000), "hard_ceiling").tripped is False


@pytest.mark.parametrize(("previous", "outcome"), [(1, AUTO), (2, APPROVAL)])
def test_the_customer_refund_count_limit_counts_this_refund(make_order, previous, outcome):
    make_policy(max_refunds_in_window=2, window_days=30)
    order = make_order(email="ada@example.com", total_cents=10000)
    for n in range(previous):
        Refund.objects.create(order=order, amount_cents=100, reference=f"re_c{n}")

    decision = evaluate(1000, customer_email="ada@example.com")

    assert decision.outcome == outcome
    assert rule(decision, "customer_refund_count").detail.startswith(
        f"{previous + 1} refunds in 30"
    )


@pytest.mark.parametrize(("amount", "outcome"), [(3000, AUTO), (3001, APPROVAL)])
def test_the_customer_refund_total_limit_adds_this_refund(make_order, amount, outcome):
    make_policy(max_total_in_window_cents=10000, window_days=30)
    order = make_order(email="ada@example.com", total_cents=50000)
    Refund.objects.create(order=order, amount_cents=7000, reference="re_t1")

    decision = evaluate(amount, customer_email="ADA@example.com")

    assert decision.outcome == outcome
    assert "limit $100.00" in rule(decision, "customer_refund_total").detail


def test_refunds_outside_the_window_and_of_other_customers_do_not_count(make_order):
    make_policy(max_refunds_in_window=1, window_days=30)
    mine = make_order(email="ada@example.com")
    theirs = make_order(email="bob@example.com")
    Refund.objects.create(
        order=mine,
        amount_cents=100,
        reference="re_old",
        created_at=timezone.now() - timedelta(days=31),
    )
    Refund.objects.create(order=theirs, amount_cents=100, reference="re_bob")

    assert evaluate(1000, customer_email="ada@example.com").outcome == AUTO
    Refund.objects.create(
        order=mine,
        amount_cents=100,
        reference="re_recent",
        created_at=timezone.now() - timedelta(days=29),
    )
    assert evaluate(1000, customer_email="ada@example.com").outcome == APPROVAL


@pytest.mark.parametrize(("status", "outcome"), [("delivered", AUTO), ("shipped", APPROVAL)])
def test_orders_not_yet_delivered_need_a_person_when_the_policy_says_so(
    make_order, status, outcome
):
    make_policy(undelivered_needs_approval=True)
    order = ShopOrderDirectory().get(make_order(status=status).order_id)

    decision = evaluate(1000, order=order)

    assert decision.outcome == outcome
    assert rule(decision, "order_not_delivered").detail == f"order {order.order_id} is {status}"


@pytest.mark.parametrize(("days", "outcome"), [(60, AUTO), (61, APPROVAL)])
def test_orders_placed_long_ago_need_a_person(make_order, days, outcome):
    make_policy(old_order_days=60)
    placed = timezone.now() - timedelta(days=days, hours=1)
    row = make_order()
    Order.objects.filter(pk=row.pk).update(placed_at=placed)
    order = ShopOrderDirectory().get(row.order_id)

    decision = evaluate(1000, order=order)

    assert decision.outcome == outcome
    assert rule(decision, "order_age").detail.startswith(f"placed {days} days ago")


@pytest.mark.parametrize(("ambiguous", "outcome"), [(False, AUTO), (True, APPROVAL)])
def test_tickets_the_triage_called_ambiguous_need_a_person(ambiguous, outcome):
    make_policy(ambiguous_needs_approval=True)

    decision = evaluate(1000, ambiguous=ambiguous)

    assert decision.outcome == outcome
    assert rule(decision, "ambiguous_ticket").tripped is ambiguous


def test_rules_switched_off_are_not_evaluated(make_order):
    make_policy()
    order = ShopOrderDirectory().get(make_order(status="placed").order_id)

    decision = evaluate(1000, order=order, ambiguous=True, customer_email="ada@example.com")

    assert [r.rule for r in decision.rules] == ["approval_threshold"]
    assert decision.outcome == AUTO


def test_every_rule_is_recorded_passed_or_tripped_with_its_numbers(make_order):
    make_policy(
        four_eyes_threshold_cents=20000,
        block_above_cents=50000,
        max_refunds_in_window=3,
        max_total_in_window_cents=100000,
        undelivered_needs_approval=True,
        old_order_days=90,
        ambiguous_needs_approval=True,
    )
    order = ShopOrderDirectory().get(make_order().order_id)

    decision = evaluate(6000, order=order, customer_email="ada@example.com")

    assert {r["rule"]: r["tripped"] for r in decision.as_list()} == {
        "hard_ceiling": False,
        "approval_threshold": True,
        "four_eyes": False,
        "customer_refund_count": False,
        "customer_refund_total": False,
        "order_not_delivered": False,
        "order_age": False,
        "ambiguous_ticket": False,
    }
    assert all(r["detail"] for r in decision.as_list())
    assert decision.policy_version.version == 1


def test_a_policy_for_another_tool_can_hold_its_calls_for_ambiguous_tickets():
    RiskPolicy.objects.create(tool="send_reply", currency="", ambiguous_needs_approval=True)

    held = policy_evaluate(tool="send_reply", amount_cents=None, ambiguous=True)
    free = policy_evaluate(tool="send_reply", amount_cents=None, ambiguous=False)

    assert (held.outcome, free.outcome) == (APPROVAL, AUTO)


# --- history ---------------------------------------------------------------------


def test_each_change_keeps_who_when_old_and_new(admin_user):
    policy = make_policy()
    policy.approval_threshold_cents = 7500
    change = policy_save(policy=policy, actor=admin_user)

    assert change.version == 2 and policy.version == 2
    assert change.changed_by == admin_user
    assert change.old["approval_threshold_cents"] == 5000
    assert change.new["approval_threshold_cents"] == 7500
    assert PolicyChange.objects.filter(policy=policy).count() == 2


def test_saving_without_a_change_adds_no_version():
    policy = make_policy()

    assert policy_save(policy=policy, actor=None) is None
    assert PolicyChange.objects.filter(policy=policy).count() == 1


def test_the_evaluation_points_at_the_version_in_force():
    policy = make_policy()
    policy.approval_threshold_cents = 1000
    policy_save(policy=policy, actor=None)

    decision = evaluate(1500)

    assert decision.outcome == APPROVAL
    assert decision.policy_version.version == 2
    assert decision.version_label == "issue_refund USD v2"


# --- autonomy share -------------------------------------------------------------------


def test_the_bucket_of_a_ticket_is_fixed_by_its_code():
    code = "2f1c3a9e-0000-4000-8000-000000000001"
    assert ticket_bucket(code) == ticket_bucket(code)
    assert 0 <= ticket_bucket(code) < 100


@pytest.mark.parametrize("share", [0, 5, 50, 100])
def test_the_autonomy_share_admits_tickets_below_it(share, make_run, admin_user):
    autonomy_save(setting=AutonomySetting(pk=1, share_percent=share), actor=admin_user)
    runs = [make_run() for _ in range(40)]

    for run in runs:
        verdict = autonomy_check(ticket=run.ticket)
        assert verdict.admitted is (ticket_bucket(run.ticket.code) < share)
    admitted = sum(autonomy_check(ticket=r.ticket).admitted for r in runs)
    if share == 0:
        assert admitted == 0
    if share == 100:
        assert admitted == 40
    assert PolicyChange.objects.get(subject="autonomy").new["share_percent"] == share
