"""The Stripe gateway: the real stripe SDK over HTTP against a local fake Stripe."""

from datetime import UTC, datetime, timedelta

import pytest

from agentops.integrations.errors import (
    IdempotencyConflict,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from agentops.integrations.payments import get_payment_gateway
from agentops.integrations.payments.codes import PROVIDER_CODES, customer_meaning
from agentops.integrations.payments.stripe_gateway import StripeGateway
from agentops.runtime.errors import TERMINAL, TRANSIENT, classify


def refund(amount=1000, key="refund:t1:ORD-1", payment="pi_1", **meta):
    return StripeGateway().refund(
        payment_ref=payment,
        amount_cents=amount,
        currency="USD",
        idempotency_key=key,
        metadata={"ticket": "t1", "order": "ORD-1", "run": "r1", **meta},
    )


def test_the_backend_setting_switches_the_gateway_on(fake_stripe):
    assert isinstance(get_payment_gateway(), StripeGateway)


def test_a_refund_carries_the_ledger_key_as_idempotency_key_and_in_metadata(fake_stripe):
    made = refund()

    assert made.refund_id.startswith("re_") and made.amount_cents == 1000
    assert made.currency == "USD" and made.payment_ref == "pi_1"
    assert made.metadata == {
        "ticket": "t1",
        "order": "ORD-1",
        "run": "r1",
        "ledger_key": "refund:t1:ORD-1",
    }
    assert made.ledger_key == "refund:t1:ORD-1"


def test_the_same_key_and_parameters_replay_the_first_refund(fake_stripe):
    first = refund()
    again = refund()

    assert again.refund_id == first.refund_id
    assert len(fake_stripe.refunds_for("pi_1")) == 1


def test_the_same_key_with_other_parameters_is_a_loud_terminal_error(fake_stripe, caplog):
    refund(amount=1000)
    with pytest.raises(IdempotencyConflict) as caught:
        refund(amount=2000)

    assert any(r.levelname == "ERROR" and "idempotency" in r.message for r in caplog.records)
    c = classify(caught.value)
    assert (c.error_class, c.code, c.retryable) == (TERMINAL, "idempotency_key_reused", False)
    assert "same parameters" in str(caught.value)


@pytest.mark.parametrize(
    ("setup", "code", "meaning"),
    [
        (lambda s: s.refunds.append(_existing(5000)), "charge_already_refunded", "already"),
        (lambda s: None, "amount_too_large", "a person must look at it"),
    ],
)
def test_business_errors_are_terminal_with_their_meaning(fake_stripe, setup, code, meaning):
    setup(fake_stripe)
    with pytest.raises(ProviderRejected) as caught:
        refund(amount=9000)

    c = classify(caught.value)
    assert (c.error_class, c.code) == (TERMINAL, code)
    assert PROVIDER_CODES[code].error_class == TERMINAL
    assert meaning in customer_meaning(code, str(caught.value))


def test_an_unknown_payment_is_resource_missing(fake_stripe):
    with pytest.raises(ProviderRejected) as caught:
        refund(payment="pi_nope")
    assert caught.value.code == "resource_missing"
    assert PROVIDER_CODES["resource_missing"].needs_person


@pytest.mark.parametrize(
    ("fault", "error", "outcome_unknown"),
    [
        ("429", RateLimited, False),
        ("500", ProviderUnavailable, False),
        ("timeout_after_commit", ProviderTimeout, True),
        ("drop_after_commit", ProviderTimeout, True),
    ],
)
def test_infrastructure_faults_are_transient(fake_stripe, fault, error, outcome_unknown):
    fake_stripe.push(fault)
    with pytest.raises(error) as caught:
        refund()

    c = classify(caught.value)
    assert c.error_class == TRANSIENT and c.retryable
    assert c.outcome_unknown is outcome_unknown
    assert fake_stripe.posts == 1  # max_network_retries=0: retrying is the runtime's job


def test_a_refund_whose_answer_was_lost_is_found_by_its_ledger_key(fake_stripe):
    fake_stripe.push("timeout_after_commit")
    with pytest.raises(ProviderTimeout):
        refund(key="refund:t1:ORD-1")
    refund(amount=500, key="refund:t2:ORD-1", ticket="t2")

    gateway = StripeGateway()
    found = gateway.find_refund(payment_ref="pi_1", idempotency_key="refund:t1:ORD-1")
    assert found is not None and found.amount_cents == 1000
    assert gateway.find_refund(payment_ref="pi_1", idempotency_key="refund:t9:ORD-1") is None
    # And retrying with the same key replays it instead of refunding twice.
    assert refund(key="refund:t1:ORD-1").refund_id == found.refund_id
    assert len(fake_stripe.refunds_for("pi_1")) == 2


def test_listing_follows_pagination_and_the_since_filter(fake_stripe, monkeypatch):
    monkeypatch.setattr("agentops.integrations.payments.stripe_gateway.PAGE_SIZE", 2)
    for n in range(5):
        refund(amount=100, key=f"refund:t{n}:ORD-1", ticket=f"t{n}")

    listed = StripeGateway().list_refunds()
    assert [r.ledger_key for r in listed] == [f"refund:t{n}:ORD-1" for n in range(5)]
    later = datetime.fromtimestamp(fake_stripe.refunds[3]["created"], tz=UTC)
    assert len(StripeGateway().list_refunds(since=later)) == 2
    assert StripeGateway().list_refunds(since=later + timedelta(days=1)) == []


def test_a_wrong_api_key_is_terminal(fake_stripe, settings):
    settings.STRIPE_API_KEY = "sk_test_wrong"
    with pytest.raises(ProviderRejected) as caught:
        refund()
    assert caught.value.code == "authentication_failed"
    assert classify(caught.value).error_class == TERMINAL


def _existing(amount):
    return {
        "id": "re_earlier",
        "amount": amount,
        "currency": "usd",
        "charge": "ch_for_pi_1",
        "payment_intent": "pi_1",
        "created": 1,
        "metadata": {},
    }
