"""Every demo ticket, run by a real Celery worker to the end its story intends."""

from collections import Counter

import pytest
from django.contrib.auth import get_user_model

from agentops.models import Effect, Run
from agentops.shop.demo import TICKETS, demo_seed
from agentops.simgateway.models import ProviderRefund
from approvals.models import PendingAction
from approvals.services import action_approve
from tests.worker.conftest import wait_for_runs
from traces.models import Span

pytestmark = [pytest.mark.worker]

END_STATES = {Run.Status.RESOLVED, Run.Status.ESCALATED, Run.Status.FAILED}


def _runs_by_external_id() -> dict[str, Run]:
    return {run.ticket.external_id: run for run in Run.objects.select_related("ticket")}


def _approve_everything() -> int:
    lead = get_user_model().objects.get(username="lead")
    pending = list(PendingAction.objects.filter(status=PendingAction.Status.PENDING))
    for action in pending:
        action_approve(action=action, actor=lead)
    return len(pending)


def _provider_refunds_per_ticket_and_order() -> Counter:
    return Counter(
        (refund.metadata.get("ticket"), refund.metadata.get("order"))
        for refund in ProviderRefund.objects.exclude(metadata__ticket=None)
    )


def test_every_demo_ticket_reaches_the_end_its_story_intends(start_worker):
    start_worker()
    demo_seed()
    wait_for_runs(timeout=120)
    runs = _runs_by_external_id()
    assert len(runs) == len(TICKETS)

    for ticket in TICKETS:
        run = runs[ticket["external_id"]]
        expected = (
            Run.Status.AWAITING_APPROVAL if ticket["outcome"] == "approval" else Run.Status.RESOLVED
        )
        assert run.status == expected, (ticket["external_id"], run.status, run.outcome_reason)
        refunds = ProviderRefund.objects.filter(metadata__ticket=str(run.ticket.code))
        if ticket["outcome"] == "refund":
            assert [r.amount_cents for r in refunds] == [ticket["refund_cents"]], ticket[
                "external_id"
            ]
        else:
            assert not refunds.exists(), ticket["external_id"]

    assert _approve_everything() == sum(t["outcome"] == "approval" for t in TICKETS)
    wait_for_runs(timeout=120, waiting=(Run.Status.QUEUED, Run.Status.RUNNING))
    runs = _runs_by_external_id()
    for ticket in TICKETS:
        run = runs[ticket["external_id"]]
        assert run.status == Run.Status.RESOLVED, (ticket["external_id"], run.outcome_reason)
        if ticket["outcome"] in {"refund", "approval"}:
            assert ProviderRefund.objects.filter(metadata__ticket=str(run.ticket.code)).count() == 1
    assert max(_provider_refunds_per_ticket_and_order().values()) == 1


def test_demo_tickets_with_ten_percent_timeouts_after_commit_pay_nobody_twice(start_worker):
    start_worker(env={"GATEWAY_TIMEOUT_AFTER_COMMIT": "0.1", "GATEWAY_FAULT_SEED": "2"})
    demo_seed()
    wait_for_runs(timeout=180)
    _approve_everything()
    wait_for_runs(timeout=180)

    runs = list(Run.objects.all())
    assert len(runs) == len(TICKETS)
    assert all(run.status in END_STATES | {Run.Status.AWAITING_APPROVAL} for run in runs)

    # Zero duplicates, counted at the provider, not in our own ledger.
    per_ticket_order = _provider_refunds_per_ticket_and_order()
    assert per_ticket_order and max(per_ticket_order.values()) == 1
    refunds = Effect.objects.filter(tool="issue_refund")
    assert refunds.filter(status=Effect.Status.SUCCEEDED).count() == len(per_ticket_order)

    # A span for every attempt against the provider.
    for effect in refunds:
        attempt_spans = Span.objects.filter(
            kind=Span.Kind.TOOL, attributes__idempotency_key=effect.idempotency_key
        ).exclude(attributes__has_key="replayed_from_ledger")
        assert attempt_spans.count() == effect.attempts, effect.idempotency_key
    # The two scripted timeouts at least really happened, and were absorbed.
    timeouts = Span.objects.filter(
        kind=Span.Kind.TOOL, name="issue_refund", error_class="transient"
    )
    assert timeouts.count() >= 2
