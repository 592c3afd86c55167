"""Re-runs and forks are enqueued and advanced by a real Celery worker, like any run."""

import pytest

from agentops.models import Effect, Run
from agentops.replay import replay_start
from agentops.simgateway.models import ProviderRefund
from tests.worker.conftest import wait_for_runs
from tests.worker.test_worker_runs import _order

pytestmark = [pytest.mark.worker]


def test_a_worker_reruns_and_forks_a_run_without_repeating_its_refund(start_worker):
    from agentops.services import ticket_submit

    start_worker()
    order = _order(2200)
    submission = ticket_submit(
        customer_email="wk@example.com", subject="Refund", body=f"Refund {order.order_id}"
    )
    wait_for_runs(timeout=60)
    original = Run.objects.get(pk=submission.run.pk)
    assert original.status == Run.Status.RESOLVED, original.outcome_reason

    rerun = replay_start(original, mode="rerun")
    fork = replay_start(original, mode="fork", from_step=2)
    assert rerun.status == fork.status == Run.Status.QUEUED

    wait_for_runs(timeout=60)
    rerun.refresh_from_db(), fork.refresh_from_db()
    assert rerun.status == Run.Status.RESOLVED, rerun.outcome_reason
    assert fork.status == Run.Status.RESOLVED, fork.outcome_reason
    assert ProviderRefund.objects.filter(payment_ref=order.payment_ref).count() == 1
    assert Effect.objects.filter(run__in=[rerun, fork]).count() == 0
    assert rerun.spans.filter(attributes__replayed_from_ledger=True, name="issue_refund").exists()
    assert fork.spans.filter(attributes__would_execute=True, name="issue_refund").exists()
