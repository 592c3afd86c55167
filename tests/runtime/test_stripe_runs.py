"""The agent loop with the Stripe gateway: the real SDK against a local fake Stripe."""

import json

import pytest
from django.core import mail

from agentops.models import Effect, Run
from agentops.runtime.loop import run_advance

pytestmark = pytest.mark.django_db


def _existing(amount, payment):
    return {
        "id": "re_earlier",
        "amount": amount,
        "currency": "usd",
        "charge": f"ch_for_{payment}",
        "payment_intent": payment,
        "created": 1,
        "metadata": {},
    }


@pytest.fixture
def shop_stripe(fake_stripe, make_order):
    def make(total_cents=2500):
        order = make_order(total_cents=total_cents)
        fake_stripe.charges[order.payment_ref] = (total_cents, "usd")
        return order

    return make


def test_a_run_refunds_through_stripe_once_despite_a_timeout_after_commit(
    fake_stripe, shop_stripe, submit
):
    order = shop_stripe()
    fake_stripe.push("timeout_after_commit")
    run = submit(f"Please refund {order.order_id}, it broke.")
    run_advance(run_id=run.pk, worker="w")
    run.refresh_from_db()

    assert run.status == Run.Status.RESOLVED, run.outcome_reason
    assert len(fake_stripe.refunds_for(order.payment_ref)) == 1
    effect = Effect.objects.get(tool="issue_refund")
    assert effect.status == Effect.Status.SUCCEEDED and effect.attempts == 2
    assert effect.provider_ref == fake_stripe.refunds[0]["id"]
    tries = run.spans.filter(kind="tool", name="issue_refund").order_by("attempt")
    assert [s.error_class for s in tries] == ["transient", ""]


def test_the_model_is_told_what_charge_already_refunded_means_not_a_stack_trace(
    fake_stripe, shop_stripe, submit
):
    order = shop_stripe()
    fake_stripe.refunds.append(_existing(2500, order.payment_ref))
    run = submit(f"Please refund {order.order_id}.")
    run_advance(run_id=run.pk, worker="w")
    run.refresh_from_db()

    answers = [
        b
        for m in run.messages
        if m["role"] == "user" and isinstance(m["content"], list)
        for b in m["content"]
        if b.get("type") == "tool_result" and b.get("is_error")
    ]
    told = json.loads(answers[0]["content"])
    assert told["error"] == "charge_already_refunded"
    assert "customer already has their money back" in told["message"]
    assert "Traceback" not in told["message"]
    assert "already been refunded" in mail.outbox[0].body
    assert Effect.objects.get(tool="issue_refund").status == Effect.Status.FAILED
