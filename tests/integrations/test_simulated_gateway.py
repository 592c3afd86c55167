"""The simulated payment provider: idempotency, business rules, injected faults."""

import threading
from datetime import UTC, datetime

import pytest
from django.db import connection

from agentops.db.batch import statements_in
from agentops.integrations.errors import (
    IdempotencyConflict,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from agentops.integrations.payments import get_payment_gateway
from agentops.integrations.payments.simulated import SimulatedGateway, request_hash
from agentops.shop.models import Customer, Order
from agentops.simgateway.models import ProviderRefund, ScriptedFault

PAYMENT = "pi_3PaaaaaaaaaaaaaaaaaaaaaA"


@pytest.fixture(autouse=True)
def no_faults(settings):
    settings.GATEWAY_LEGACY = False
    settings.GATEWAY_LATENCY_MS = 0
    settings.GATEWAY_SERVER_ERROR = 0.0
    settings.GATEWAY_RATE_LIMIT = 0.0
    settings.GATEWAY_TIMEOUT_AFTER_COMMIT = 0.0


@pytest.fixture
def charge(db):
    """A 75.00 USD order, i.e. a payment of 7500 the provider knows."""
    customer = Customer.objects.create(email="ada@example.com", name="Ada")
    return Order.objects.create(
        order_id="ORD-10001",
        customer=customer,
        total_cents=7500,
        currency="USD",
        status=Order.Status.DELIVERED,
        placed_at=datetime(2026, 1, 5, tzinfo=UTC),
        delivered_at=datetime(2026, 1, 8, tzinfo=UTC),
        tracking_number="1Z999AA10000000001",
        payment_ref=PAYMENT,
    )


def refund(amount_cents=2500, *, key="key-1", currency="USD", payment_ref=PAYMENT):
    return SimulatedGateway().refund(
        payment_ref=payment_ref,
        amount_cents=amount_cents,
        currency=currency,
        idempotency_key=key,
        metadata={"ticket": "t-1"},
    )


def test_it_is_the_default_gateway(settings):
    settings.PAYMENTS_BACKEND = "simulated"
    assert get_payment_gateway().name == "simulated"


def test_it_stores_a_refund_in_its_own_records(charge):
    result = refund(2500)

    row = ProviderRefund.objects.get()
    assert result.refund_id == row.refund_id
    assert result.refund_id.startswith("re_")
    assert (row.payment_ref, row.amount_cents, row.currency) == (PAYMENT, 2500, "USD")
    assert row.idempotency_key == "key-1"
    # The ledger key travels in the metadata too, as the Stripe adapter sends it.
    assert row.metadata == {"ticket": "t-1", "ledger_key": "key-1"}


def test_it_returns_the_same_refund_for_the_same_key_and_request(charge):
    first = refund(2500, key="key-1")
    second = refund(2500, key="key-1")

    assert second == first
    assert ProviderRefund.objects.count() == 1


def test_it_treats_the_currency_case_as_the_same_request(charge):
    first = refund(2500, currency="USD")
    assert refund(2500, currency="usd") == first


def test_it_refuses_the_same_key_with_another_amount(charge):
    refund(2500, key="key-1")

    with pytest.raises(IdempotencyConflict) as caught:
        refund(3000, key="key-1")

    assert caught.value.code == "idempotency_key_reused"
    assert ProviderRefund.objects.count() == 1


def test_it_answers_a_replay_even_after_the_payment_is_fully_refunded(charge):
    first = refund(7500, key="key-1")
    assert refund(7500, key="key-1") == first


def test_it_makes_two_refunds_for_two_keys(charge):
    refund(2500, key="key-1")
    refund(2500, key="key-2")
    assert ProviderRefund.objects.count() == 2


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"payment_ref": "pi_unknown"}, "resource_missing"),
        ({"currency": "EUR"}, "currency_mismatch"),
        ({"amount_cents": 7501}, "amount_too_large"),
        ({"amount_cents": 0}, "invalid_amount"),
        ({"amount_cents": -100}, "invalid_amount"),
    ],
)
def test_it_rejects_what_a_provider_would_reject(charge, kwargs, code):
    with pytest.raises(ProviderRejected) as caught:
        refund(**kwargs)

    assert caught.value.code == code
    assert not ProviderRefund.objects.exists()


def test_it_rejects_a_refund_of_more_than_is_left(charge):
    refund(5000, key="key-1")

    with pytest.raises(ProviderRejected) as caught:
        refund(2600, key="key-2")

    assert caught.value.code == "amount_too_large"
    refund(2500, key="key-3")  # exactly what is left is fine
    assert ProviderRefund.objects.count() == 2


def test_it_rejects_a_refund_on_a_payment_refunded_in_full(charge):
    refund(7500, key="key-1")

    with pytest.raises(ProviderRejected) as caught:
        refund(100, key="key-2")

    assert caught.value.code == "charge_already_refunded"


def test_it_does_not_keep_a_key_whose_request_was_rejected(charge):
    with pytest.raises(ProviderRejected):
        refund(9999, key="key-1")

    assert refund(2500, key="key-1").amount_cents == 2500


def test_a_timeout_after_commit_leaves_one_refund_that_a_retry_returns(charge, settings):
    settings.GATEWAY_TIMEOUT_AFTER_COMMIT = 1.0

    with pytest.raises(ProviderTimeout) as caught:
        refund(2500, key="key-1")

    assert caught.value.may_have_committed
    committed = ProviderRefund.objects.get()
    assert committed.amount_cents == 2500
    retried = refund(2500, key="key-1")
    assert retried.refund_id == committed.refund_id
    assert ProviderRefund.objects.count() == 1
    assert SimulatedGateway().find_refund(payment_ref=PAYMENT, idempotency_key="key-1") == retried


@pytest.mark.parametrize(
    ("setting", "error"),
    [("GATEWAY_SERVER_ERROR", ProviderUnavailable), ("GATEWAY_RATE_LIMIT", RateLimited)],
)
def test_a_500_or_429_commits_nothing(charge, settings, setting, error):
    setattr(settings, setting, 1.0)

    with pytest.raises(error):
        refund(2500, key="key-1")

    assert not ProviderRefund.objects.exists()
    setattr(settings, setting, 0.0)
    assert refund(2500, key="key-1").amount_cents == 2500


def test_a_500_says_its_status_and_a_429_when_to_retry(charge, settings):
    settings.GATEWAY_SERVER_ERROR = 1.0
    with pytest.raises(ProviderUnavailable) as server_error:
        refund()
    settings.GATEWAY_SERVER_ERROR = 0.0
    settings.GATEWAY_RATE_LIMIT = 1.0
    with pytest.raises(RateLimited) as rate_limited:
        refund()

    assert server_error.value.status_code == 500
    assert rate_limited.value.retry_after == pytest.approx(0.05)


def test_it_adds_the_configured_latency(charge, settings, monkeypatch):
    slept = []
    monkeypatch.setattr("agentops.integrations.payments.simulated.time.sleep", slept.append)
    settings.GATEWAY_LATENCY_MS = 250

    refund()

    assert slept == [0.25]


def test_a_seeded_fault_sequence_repeats(charge, settings):
    from agentops.integrations.payments.simulated import _draw, reset_fault_rng

    settings.GATEWAY_FAULT_SEED = 7
    reset_fault_rng()
    first = [_draw(0.5) for _ in range(20)]
    reset_fault_rng()
    second = [_draw(0.5) for _ in range(20)]

    assert first == second
    assert True in first and False in first


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        (ScriptedFault.Kind.SERVER_ERROR, ProviderUnavailable),
        (ScriptedFault.Kind.RATE_LIMIT, RateLimited),
    ],
)
def test_a_scripted_fault_fires_remaining_times_then_stops(charge, kind, error):
    fault = ScriptedFault.objects.create(payment_ref=PAYMENT, kind=kind, remaining=2)

    for _ in range(2):
        with pytest.raises(error):
            refund(key="key-1")

    fault.refresh_from_db()
    assert fault.remaining == 0
    assert not ProviderRefund.objects.exists()
    assert refund(key="key-1").amount_cents == 2500


def test_a_scripted_timeout_after_commit_fires_once_on_the_commit(charge):
    fault = ScriptedFault.objects.create(
        payment_ref=PAYMENT, kind=ScriptedFault.Kind.TIMEOUT_AFTER_COMMIT, remaining=1
    )

    with pytest.raises(ProviderTimeout):
        refund(2500, key="key-1")
    fault.refresh_from_db()
    assert fault.remaining == 0
    assert refund(2500, key="key-1").refund_id == ProviderRefund.objects.get().refund_id


def test_a_scripted_timeout_is_not_spent_on_a_rejected_request(charge):
    fault = ScriptedFault.objects.create(
        payment_ref=PAYMENT, kind=ScriptedFault.Kind.TIMEOUT_AFTER_COMMIT, remaining=1
    )

    with pytest.raises(ProviderRejected):
        refund(99999)

    fault.refresh_from_db()
    assert fault.remaining == 1


def test_a_scripted_fault_only_touches_its_own_payment(charge):
    ScriptedFault.objects.create(
        payment_ref="pi_someone_else", kind=ScriptedFault.Kind.SERVER_ERROR, remaining=1
    )
    assert refund().amount_cents == 2500


def test_it_finds_and_lists_refunds(charge):
    made = refund(2500, key="key-1")
    refund(1000, key="key-2")

    gateway = SimulatedGateway()
    assert gateway.find_refund(payment_ref=PAYMENT, idempotency_key="key-1") == made
    assert gateway.find_refund(payment_ref=PAYMENT, idempotency_key="key-9") is None
    assert gateway.find_refund(payment_ref="pi_other", idempotency_key="key-1") is None
    assert [r.amount_cents for r in gateway.list_refunds(payment_ref=PAYMENT)] == [2500, 1000]
    assert gateway.list_refunds(payment_ref="pi_other") == []
    assert len(gateway.list_refunds()) == 2


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_calls_with_one_new_key_make_one_refund(charge):
    if connection.vendor == "sqlite":
        pytest.skip("SQLite serialises writers; real concurrency is tested on PostgreSQL")
    barrier = threading.Barrier(8)
    results, errors = [], []

    def call():
        try:
            barrier.wait()
            results.append(refund(2500, key="same-key"))
        except Exception as exc:  # collected, and asserted to be none, below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len({r.refund_id for r in results}) == 1
    assert ProviderRefund.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_refunds_with_different_keys_never_exceed_the_charge(charge):
    if connection.vendor == "sqlite":
        pytest.skip("SQLite serialises writers; real concurrency is tested on PostgreSQL")
    barrier = threading.Barrier(6)
    made, rejected = [], []

    def call(i):
        try:
            barrier.wait()
            made.append(refund(2500, key=f"key-{i}"))
        except ProviderRejected as exc:
            rejected.append(exc.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(made) == 3
    assert rejected == ["charge_already_refunded"] * 3
    assert sum(r.amount_cents for r in ProviderRefund.objects.all()) == 7500


# --- a legacy provider: it ignores idempotency keys --------------------------------


def test_a_legacy_provider_pays_again_for_the_same_key(charge, settings):
    settings.GATEWAY_LEGACY = True

    first = refund(2500, key="key-1")
    second = refund(2500, key="key-1")

    assert first.refund_id != second.refund_id
    rows = list(ProviderRefund.objects.order_by("pk"))
    assert [r.amount_cents for r in rows] == [2500, 2500]
    assert [r.idempotency_key for r in rows] == [None, None]
    assert [r.metadata["ledger_key"] for r in rows] == ["key-1", "key-1"]


def test_a_legacy_provider_still_refuses_more_than_is_left(charge, settings):
    settings.GATEWAY_LEGACY = True
    refund(5000, key="key-1")

    with pytest.raises(ProviderRejected) as caught:
        refund(5000, key="key-1")

    assert caught.value.code == "amount_too_large"


def test_a_refund_at_a_legacy_provider_is_found_by_the_metadata_we_sent(charge, settings):
    settings.GATEWAY_LEGACY = True
    settings.GATEWAY_TIMEOUT_AFTER_COMMIT = 1.0

    with pytest.raises(ProviderTimeout):
        refund(2500, key="key-1")

    gateway = SimulatedGateway()
    found = gateway.find_refund(payment_ref=PAYMENT, idempotency_key="key-1")
    assert found is not None
    assert found.refund_id == ProviderRefund.objects.get().refund_id
    assert found.ledger_key == "key-1"
    assert gateway.find_refund(payment_ref=PAYMENT, idempotency_key="key-2") is None


def test_the_ledger_alone_prevents_a_duplicate_at_a_legacy_provider_that_times_out(
    charge, settings, enqueued_runs
):
    """The seed incident against a provider without idempotency: one refund, not two.

    Every first attempt on the payment commits and then times out; the retry must ask
    the provider's records (by the key in the metadata) before paying again.
    """
    from agentops.models import Effect, Run
    from agentops.reconciliation import reconciliation_report
    from agentops.runtime.loop import run_advance
    from agentops.services import ticket_submit

    settings.GATEWAY_LEGACY = True
    settings.RETRY_BASE_DELAY_SECONDS = 0.001
    settings.RETRY_MAX_DELAY_SECONDS = 0.01
    settings.OFFLINE_MODEL_LATENCY_MS = 0
    ScriptedFault.objects.create(
        payment_ref=PAYMENT, kind=ScriptedFault.Kind.TIMEOUT_AFTER_COMMIT, remaining=3
    )
    run = ticket_submit(
        customer_email="ada@example.com",
        subject="Broken mug",
        body="The mug in ORD-10001 arrived cracked. Please refund $25.00 for it.",
    ).run

    assert run_advance(run_id=run.pk, worker="w1") == Run.Status.RESOLVED

    assert ProviderRefund.objects.filter(payment_ref=PAYMENT).count() == 1
    effect = Effect.objects.get(tool="issue_refund")
    assert effect.status == Effect.Status.SUCCEEDED
    # Two attempts, one span each: the call that timed out, then a look-up that found it.
    assert effect.attempts == 2
    tool_spans = run.spans.filter(kind="tool", name="issue_refund").order_by("attempt")
    assert [(s.attempt, s.status) for s in tool_spans] == [(1, "error"), (2, "ok")]
    assert effect.provider_ref == ProviderRefund.objects.get().refund_id
    assert ScriptedFault.objects.get().remaining == 2  # the fault really fired once
    report = reconciliation_report()
    assert report.duplicates == []
    assert report.clean, report.counts


# --- what a refund costs, and faults scripted while the provider runs ---------------


def test_a_new_refund_that_fits_takes_one_round_trip(charge, django_assert_num_queries):
    # The charge's lock and the insert, sent together as one transaction (PostgreSQL),
    # or the insert alone (SQLite).
    with django_assert_num_queries(1) as captured:
        made = refund(2500, key="key-1")
    assert statements_in(captured.captured_queries[0]["sql"]) == (
        2 if connection.vendor == "postgresql" else 1
    )
    stored = ProviderRefund.objects.get()
    assert (stored.refund_id, stored.amount_cents, stored.request_hash) == (
        made.refund_id,
        2500,
        made_hash(2500),
    )
    assert stored.metadata == {"ticket": "t-1", "ledger_key": "key-1"}
    # A replay: the round trip inserts nothing, then the exact way (begin, the charge
    # FOR UPDATE, the insert if it fits, the key's refund, commit) answers it.
    with django_assert_num_queries(6):
        assert refund(2500, key="key-1").refund_id == made.refund_id
    assert ProviderRefund.objects.count() == 1


def test_with_random_faults_configured_a_refund_takes_the_exact_way(
    charge, settings, django_assert_num_queries
):
    # A 500 or 429 must be drawn before anything is committed: begin, the charge FOR
    # UPDATE (which also says no fault is scripted), the insert if it fits, commit.
    settings.GATEWAY_SERVER_ERROR = 0.000001
    settings.GATEWAY_FAULT_SEED = 7
    with django_assert_num_queries(4):
        refund(2500, key="key-1")
    assert ProviderRefund.objects.count() == 1


def made_hash(amount_cents: int) -> str:
    return request_hash(payment_ref=PAYMENT, amount_cents=amount_cents, currency="USD")


def test_a_refund_that_does_not_fit_inserts_nothing_and_says_why(charge):
    refund(5000, key="key-1")
    for amount, code in ((2501, "amount_too_large"), (2500, None), (1, "charge_already_refunded")):
        if code is None:
            refund(amount, key=f"try-{amount}")
            continue
        with pytest.raises(ProviderRejected) as caught:
            refund(amount, key=f"try-{amount}")
        assert caught.value.code == code
    assert sorted(r.amount_cents for r in ProviderRefund.objects.all()) == [2500, 5000]


def test_a_key_used_on_another_payment_is_a_conflict(charge):
    Order.objects.create(
        order_id="ORD-10002",
        customer=charge.customer,
        total_cents=7500,
        currency="USD",
        status=Order.Status.DELIVERED,
        placed_at=charge.placed_at,
        payment_ref="pi_other_payment",
    )
    refund(2500, key="key-1")

    with pytest.raises(IdempotencyConflict):
        refund(2500, key="key-1", payment_ref="pi_other_payment")
    assert ProviderRefund.objects.count() == 1


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        (ScriptedFault.Kind.SERVER_ERROR, ProviderUnavailable),
        (ScriptedFault.Kind.RATE_LIMIT, RateLimited),
        (ScriptedFault.Kind.TIMEOUT_AFTER_COMMIT, ProviderTimeout),
    ],
)
def test_a_fault_scripted_after_a_clean_call_fires_on_the_next(charge, kind, error):
    """Nothing about faults is remembered between calls: `manage.py chaos` scripts them live."""
    refund(1000, key="key-1")
    ScriptedFault.objects.create(payment_ref=PAYMENT, kind=kind, remaining=1)

    with pytest.raises(error):
        refund(1000, key="key-2")

    assert ScriptedFault.objects.get().remaining == 0
    committed = kind == ScriptedFault.Kind.TIMEOUT_AFTER_COMMIT
    assert ProviderRefund.objects.count() == (2 if committed else 1)
    assert refund(1000, key="key-2").amount_cents == 1000  # the retry goes through


def test_a_scripted_fault_fires_before_a_replay(charge):
    first = refund(2500, key="key-1")
    ScriptedFault.objects.create(
        payment_ref=PAYMENT, kind=ScriptedFault.Kind.SERVER_ERROR, remaining=1
    )

    with pytest.raises(ProviderUnavailable):
        refund(2500, key="key-1")
    assert refund(2500, key="key-1") == first


def test_a_scripted_fault_fires_even_for_a_payment_the_provider_does_not_know(charge):
    ScriptedFault.objects.create(
        payment_ref="pi_unknown", kind=ScriptedFault.Kind.RATE_LIMIT, remaining=1
    )

    with pytest.raises(RateLimited):
        refund(payment_ref="pi_unknown")
    with pytest.raises(ProviderRejected) as caught:
        refund(payment_ref="pi_unknown")
    assert caught.value.code == "resource_missing"


def test_a_scripted_timeout_and_a_scripted_500_fire_in_turn(charge):
    for kind in (ScriptedFault.Kind.TIMEOUT_AFTER_COMMIT, ScriptedFault.Kind.SERVER_ERROR):
        ScriptedFault.objects.create(payment_ref=PAYMENT, kind=kind, remaining=1)

    with pytest.raises(ProviderUnavailable):  # before anything is committed
        refund(2500, key="key-1")
    assert not ProviderRefund.objects.exists()
    with pytest.raises(ProviderTimeout):  # then on the commit
        refund(2500, key="key-1")
    assert refund(2500, key="key-1").refund_id == ProviderRefund.objects.get().refund_id
    assert not ScriptedFault.objects.filter(remaining__gt=0).exists()


def test_a_random_500_is_drawn_after_a_scripted_fault_is_known_to_be_absent(charge, settings):
    """The fast path draws the same random faults, in the same order, as the exact one."""
    from agentops.integrations.payments.simulated import _draw, reset_fault_rng

    settings.GATEWAY_FAULT_SEED = 11
    settings.GATEWAY_SERVER_ERROR = 0.5
    reset_fault_rng()
    expected = [_draw(0.5) for _ in range(12)]
    reset_fault_rng()

    failed = []
    for i in range(12):
        try:
            refund(100, key=f"key-{i}")
            failed.append(False)
        except ProviderUnavailable:
            failed.append(True)

    assert failed == expected
    assert ProviderRefund.objects.count() == expected.count(False)


@pytest.mark.django_db(transaction=True)
def test_a_fault_scripted_by_another_connection_is_seen_at_the_next_call(charge):
    """Another process (`manage.py chaos`, a test) scripts a fault while this one runs."""
    if connection.vendor == "sqlite":
        pytest.skip("one connection per process on SQLite here; tested on PostgreSQL")
    refund(1000, key="key-1")

    def script():
        try:
            ScriptedFault.objects.create(
                payment_ref=PAYMENT, kind=ScriptedFault.Kind.TIMEOUT_AFTER_COMMIT, remaining=1
            )
        finally:
            connection.close()

    elsewhere = threading.Thread(target=script)
    elsewhere.start()
    elsewhere.join()

    with pytest.raises(ProviderTimeout):
        refund(1000, key="key-2")
    assert ScriptedFault.objects.get().remaining == 0
    assert ProviderRefund.objects.count() == 2
