"""The Must show: 200 tickets through the real SDKs against faulty fakes, nothing paid twice.

A fake Messages API (the offline model over HTTP, with 3% 429, 2% 500 and 1% 529)
and a fake Stripe (5% timeouts after the refund was committed, 3% 429, 2% 500).
Every run ends final or awaiting approval; approving the waiting ones ends them
too; the provider holds no duplicate refund; reconciliation is clean.
"""

import os
import time

import pytest

from agentops.models import Effect, Run
from agentops.reconciliation import reconciliation_report
from agentops.runtime.loop import run_advance
from approvals.models import PendingAction
from approvals.services import action_approve
from tests.fakes.messages_api import API_KEY, FakeMessagesAPI, offline_over_http

pytestmark = pytest.mark.django_db(transaction=False)

TICKETS = int(os.environ.get("SOAK_TICKETS", "200"))  # the Must show is 200


@pytest.fixture
def faulty_anthropic(settings):
    with FakeMessagesAPI(default=offline_over_http, seed=2026) as server:
        server.rate_429, server.rate_500, server.rate_529 = 0.03, 0.02, 0.01
        settings.ANTHROPIC_API_KEY = API_KEY
        settings.ANTHROPIC_BASE_URL = server.url
        settings.ANTHROPIC_TIMEOUT_SECONDS = 2.0
        settings.TRIAGE_MODEL = "claude-haiku-4-5"
        settings.AGENT_MODEL = "claude-sonnet-4-6"
        yield server


def test_200_tickets_under_faults_end_with_no_duplicate_refund_and_a_clean_reconciliation(
    faulty_anthropic, fake_stripe, make_order, submit, support_lead, capsys
):
    fake_stripe.rate_timeout_after_commit = 0.05
    fake_stripe.rate_429 = 0.03
    fake_stripe.rate_500 = 0.02
    runs = []
    for n in range(TICKETS):
        if n % 10 == 9:
            body = "When will my parcel arrive? I ordered last week."
        else:
            # Mostly small refunds that go through, every seventh one waits for a person.
            total = 12900 if n % 7 == 0 else 1000 + (n * 37) % 3900
            order = make_order(email=f"c{n}@example.com", total_cents=total)
            fake_stripe.charges[order.payment_ref] = (total, "usd")
            body = f"Please refund my order {order.order_id}, it arrived broken."
        runs.append(submit(body, email=f"c{n}@example.com"))

    started = time.monotonic()
    for run in runs:
        run_advance(run_id=run.pk, worker="soak")
        # A duplicate delivery of the task finds nothing to do.
        assert run_advance(run_id=run.pk, worker="soak-2") == "not_claimed"
    for action in PendingAction.objects.filter(status=PendingAction.Status.PENDING):
        action_approve(action=action, actor=support_lead)
        run_advance(run_id=action.run_id, worker="soak")
    elapsed = time.monotonic() - started

    statuses = dict(Run.objects.values_list("pk", "status"))
    assert len(statuses) == TICKETS
    assert all(s in Run.FINAL_STATUSES for s in statuses.values()), {
        s for s in statuses.values() if s not in Run.FINAL_STATUSES
    }
    assert fake_stripe.duplicates() == []
    per_payment = {}
    for refund in fake_stripe.refunds:
        per_payment[refund["payment_intent"]] = per_payment.get(refund["payment_intent"], 0) + 1
    assert max(per_payment.values()) == 1
    report = reconciliation_report()
    assert report.clean, report.counts
    refunded = Effect.objects.filter(tool="issue_refund", status=Effect.Status.SUCCEEDED).count()
    assert report.counts["matched"] == refunded == len(fake_stripe.refunds)
    # The faults really happened, and were survived.
    assert fake_stripe.faults_served.get("timeout_after_commit", 0) >= 3
    assert faulty_anthropic.faults_served.get("429", 0) >= 5
    approved = PendingAction.objects.filter(status=PendingAction.Status.APPROVED).count()
    assert approved >= TICKETS // 10  # the large refunds waited for a person first
    resolved = sum(1 for s in statuses.values() if s == Run.Status.RESOLVED)
    assert resolved >= TICKETS * 0.9
    with capsys.disabled():
        counts = {s: list(statuses.values()).count(s) for s in set(statuses.values())}
        print(
            f"\nfault soak: {TICKETS} tickets in {elapsed:.1f}s; runs {counts}; "
            f"approved by a person {approved}; "
            f"refunds {len(fake_stripe.refunds)} ({refunded} in the ledger); "
            f"stripe faults {fake_stripe.faults_served}; "
            f"messages faults {faulty_anthropic.faults_served}; "
            f"model requests {len(faulty_anthropic.requests)}; reconciliation {report.counts}"
        )
