"""Runs advanced by a real Celery worker process, through the real broker."""

import pytest

from agentops.models import Run
from agentops.services import ticket_submit
from agentops.shop.models import Customer, Order
from agentops.simgateway.models import ProviderRefund
from tests.worker.conftest import wait_for_runs

pytestmark = [pytest.mark.worker]


def _order(total_cents: int) -> Order:
    from django.utils import timezone

    customer, _ = Customer.objects.get_or_create(email="wk@example.com", defaults={"name": "W"})
    n = Order.objects.count() + 30001
    return Order.objects.create(
        order_id=f"ORD-{n}",
        customer=customer,
        total_cents=total_cents,
        currency="USD",
        status="delivered",
        placed_at=timezone.now(),
        delivered_at=timezone.now(),
        payment_ref=f"pi_worker{n:018d}",
    )


def test_a_worker_runs_a_submitted_ticket_to_resolution(start_worker):
    start_worker()
    order = _order(2000)
    submission = ticket_submit(
        customer_email="wk@example.com", subject="Refund", body=f"Refund {order.order_id}"
    )

    wait_for_runs(timeout=60)
    run = Run.objects.get(pk=submission.run.pk)
    assert run.status == Run.Status.RESOLVED, run.outcome_reason
    assert ProviderRefund.objects.filter(payment_ref=order.payment_ref).count() == 1


def test_duplicate_deliveries_of_a_run_advance_it_once(start_worker):
    from agentops.tasks import advance_run

    start_worker(concurrency=2)
    order = _order(2500)
    submission = ticket_submit(
        customer_email="wk@example.com", subject="Refund", body=f"Refund {order.order_id}"
    )
    for _ in range(5):
        advance_run.delay(submission.run.pk)

    wait_for_runs(timeout=60)
    run = Run.objects.get(pk=submission.run.pk)
    assert run.status == Run.Status.RESOLVED, run.outcome_reason
    assert ProviderRefund.objects.filter(payment_ref=order.payment_ref).count() == 1
    assert run.spans.filter(kind="model").count() == run.model_calls == 4
    assert run.spans.filter(kind="triage").count() == 1
