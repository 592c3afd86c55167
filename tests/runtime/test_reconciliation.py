"""Reconciliation of the ledger against the provider, with both gateways, and its command."""

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from agentops.models import Effect
from agentops.reconciliation import reconciliation_report
from agentops.runtime.loop import run_advance
from agentops.simgateway.models import ProviderRefund

pytestmark = pytest.mark.django_db


def refunded_run(make_order, submit, total_cents=2500):
    order = make_order(total_cents=total_cents)
    run = submit(f"Please refund {order.order_id}, it broke.")
    run_advance(run_id=run.pk, worker="w")
    return order, run


def provider_refund(order, key, *, ticket="t", amount=100, **extra):
    return ProviderRefund.objects.create(
        refund_id=f"re_{key.replace(':', '_')}",
        payment_ref=order.payment_ref,
        amount_cents=amount,
        currency="USD",
        idempotency_key=key,
        metadata={"ticket": ticket, "order": order.order_id},
        **extra,
    )


def test_a_refund_made_by_a_run_is_matched(make_order, submit):
    order, run = refunded_run(make_order, submit)
    report = reconciliation_report()

    assert report.clean and report.provider == "simulated"
    assert report.counts == {"matched": 1, "provider_only": 0, "ledger_only": 0, "duplicates": 0}
    (line,) = report.matched
    assert line.ledger_key == f"refund:{run.ticket.code}:{order.order_id}"
    assert line.amount_cents == 2500 and line.ledger_status == "succeeded"


def test_a_provider_refund_without_a_ledger_row_is_provider_only(make_order, submit):
    refunded_run(make_order, submit)
    stray = provider_refund(make_order(), "refund:someone:ORD-1")

    report = reconciliation_report()
    assert not report.clean
    assert [line.refund_ids for line in report.provider_only] == [(stray.refund_id,)]
    assert report.provider_only[0].note == "no ledger row for this refund"


def test_a_ledger_refund_the_provider_does_not_hold_is_ledger_only(make_order, submit):
    order, run = refunded_run(make_order, submit)
    ProviderRefund.objects.all().delete()

    report = reconciliation_report()
    assert [line.order for line in report.ledger_only] == [order.order_id]
    assert report.matched == []


def test_a_refund_the_ledger_holds_as_unknown_is_a_discrepancy(make_order, submit):
    order, run = refunded_run(make_order, submit)
    Effect.objects.filter(tool="issue_refund").update(status=Effect.Status.UNKNOWN)

    report = reconciliation_report()
    assert report.provider_only[0].ledger_status == "unknown"
    assert "unknown" in report.provider_only[0].note


def test_two_refunds_for_one_ticket_and_order_are_duplicates(make_order, submit):
    order, run = refunded_run(make_order, submit)
    provider_refund(order, "refund:other-key", ticket=str(run.ticket.code))

    report = reconciliation_report()
    (dup,) = report.duplicates
    assert (dup.ticket, dup.order) == (str(run.ticket.code), order.order_id)
    assert len(dup.refund_ids) == 2 and dup.amount_cents == 2600


def test_since_leaves_out_older_refunds(make_order, submit):
    provider_refund(make_order(), "refund:old:ORD-1", created_at=timezone.now() - timedelta(days=3))
    assert len(reconciliation_report().provider_only) == 1
    since = timezone.now() - timedelta(days=1)
    assert reconciliation_report(since=since).clean


def test_it_reconciles_against_stripe_too(fake_stripe, make_order, submit):
    order = make_order(total_cents=2500)
    fake_stripe.charges[order.payment_ref] = (2500, "usd")
    run = submit(f"Please refund {order.order_id}.")
    run_advance(run_id=run.pk, worker="w")

    report = reconciliation_report()
    assert report.provider == "stripe" and report.clean and len(report.matched) == 1

    fake_stripe.refunds.append(
        {
            **fake_stripe.refunds[0],
            "id": "re_twice",
            "metadata": {**fake_stripe.refunds[0]["metadata"], "ledger_key": "refund:x"},
        }
    )
    report = reconciliation_report()
    assert len(report.duplicates) == 1 and len(report.provider_only) == 1


def test_the_command_says_clean_or_fails_with_the_discrepancies(make_order, submit):
    refunded_run(make_order, submit)
    out = StringIO()
    call_command("reconcile", stdout=out)
    assert "matched 1, provider-only 0, ledger-only 0, duplicates 0" in out.getvalue()
    assert "Clean" in out.getvalue()

    provider_refund(make_order(), "refund:stray:ORD-9")
    out = StringIO()
    with pytest.raises(CommandError, match="disagree"):
        call_command("reconcile", "--since", datetime.now(UTC).date().isoformat(), stdout=out)
    assert "In the provider, not in the ledger:" in out.getvalue()
    assert "refund:stray:ORD-9" in out.getvalue()


def test_the_command_refuses_a_bad_date():
    with pytest.raises(CommandError, match="--since must be a date"):
        call_command("reconcile", "--since", "yesterday")
