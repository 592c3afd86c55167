"""The minimal risk policy: refunds above the threshold wait for a person."""

import pytest

from approvals.models import RiskPolicy
from approvals.policy import APPROVAL, AUTO, policy_evaluate

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("amount", "outcome"), [(1, AUTO), (4999, AUTO), (5000, AUTO), (5001, APPROVAL)]
)
def test_the_default_threshold_is_fifty_in_the_orders_currency(amount, outcome, settings):
    settings.DEFAULT_APPROVAL_THRESHOLD_CENTS = 5000
    decision = policy_evaluate(tool="issue_refund", amount_cents=amount, currency="USD")

    assert decision.outcome == outcome
    assert decision.rules[0].tripped is (outcome == APPROVAL)


def test_an_admin_policy_for_the_currency_overrides_the_default():
    RiskPolicy.objects.create(tool="issue_refund", currency="EUR", approval_threshold_cents=2000)

    assert (
        policy_evaluate(tool="issue_refund", amount_cents=2001, currency="eur").outcome == APPROVAL
    )
    assert policy_evaluate(tool="issue_refund", amount_cents=2001, currency="USD").outcome == AUTO


def test_the_rule_says_why_with_the_amounts():
    decision = policy_evaluate(tool="issue_refund", amount_cents=12900, currency="USD")

    assert decision.as_list() == [
        {
            "rule": "approval_threshold",
            "tripped": True,
            "detail": "$129.00 > approval threshold $50.00",
            "effect": "approval",
        }
    ]


def test_replies_run_without_approval():
    assert policy_evaluate(tool="send_reply", amount_cents=None).outcome == AUTO
