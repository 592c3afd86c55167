"""A reply is grounded in the ledger before it is sent."""

import pytest

from agentops.models import Effect
from agentops.runtime.grounding import claimed_refund_sentences, reply_hold_reason


@pytest.mark.parametrize(
    "body",
    [
        "I've issued a refund of $25.00 for order ORD-1.",
        "Your refund has been processed.",
        "We have refunded your order.",
        "Good news: the refund is on its way!",
    ],
)
def test_it_recognises_a_claimed_refund(body):
    assert claimed_refund_sentences(body)


@pytest.mark.parametrize(
    "body",
    [
        "I'm sorry, but we're unable to issue a refund for order ORD-1.",
        "We're checking the status of your refund and will confirm by email.",
        "Your refund could not be processed yet.",
        "Order ORD-1 has already been refunded in full, so there is nothing more to refund.",
        "Where is my parcel?",
    ],
)
def test_it_does_not_read_a_denial_or_a_question_as_a_claim(body):
    assert not claimed_refund_sentences(body)


@pytest.mark.django_db
def test_a_claim_needs_a_succeeded_refund_of_that_amount_in_the_ledger(make_order, submit):
    run = submit("refund")
    claim = "I've issued a refund of $25.00 for your order."
    assert "holds no completed refund" in reply_hold_reason(body=claim, ticket_id=run.ticket_id)

    Effect.objects.create(
        idempotency_key="refund:x",
        ticket=run.ticket,
        run=run,
        tool="issue_refund",
        request={},
        request_hash="h",
        status=Effect.Status.SUCCEEDED,
        result={"amount_cents": 2500},
    )
    assert reply_hold_reason(body=claim, ticket_id=run.ticket_id) is None
    other = "I've issued a refund of $30.00 for your order."
    assert "[3000]" in reply_hold_reason(body=other, ticket_id=run.ticket_id)
