"""Shadow mode through a real Celery worker: production resolves, its shadow runs in dry run."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from agentops.models import Effect, Run
from agentops.services import ticket_submit
from agentops.shop.models import Customer, Order
from agentops.simgateway.models import ProviderRefund
from agentops.tasks import advance_run
from evals.models import ShadowRun, ShadowSetting
from evals.selectors import shadow_summary
from tests.worker.conftest import start_worker  # noqa: F401

pytestmark = [pytest.mark.worker]


def _wait_for(predicate, what: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.25)
    raise AssertionError(f"{what} after {timeout}s: none")


def test_a_worker_shadows_a_finished_production_run_in_dry_run(start_worker):  # noqa: F811
    ShadowSetting.objects.create(pk=1, enabled=True, share_percent=100, model="offline")
    customer = Customer.objects.create(email="sh@example.com", name="S")
    order = Order.objects.create(
        order_id="ORD-40001",
        customer=customer,
        total_cents=2000,
        currency="USD",
        status="delivered",
        payment_ref="pi_shadow000000000000001",
        placed_at=timezone.now() - timedelta(days=10),
        delivered_at=timezone.now() - timedelta(days=5),
    )
    start_worker()

    submission = ticket_submit(
        customer_email="sh@example.com", subject="Refund", body=f"Refund {order.order_id}"
    )
    link = _wait_for(lambda: ShadowRun.objects.first(), "a shadow started by the worker")
    # The worker enqueues the shadow on the default queue, which this test's private
    # worker does not consume; send it to the private one, as the sweeper would.
    advance_run.delay(link.shadow_id)
    link = _wait_for(
        lambda: ShadowRun.objects.filter(shadow__status__in=Run.FINAL_STATUSES).first(),
        "a finished shadow",
    )
    production, shadow = link.production, link.shadow
    assert production.pk == submission.run.pk
    assert production.status == Run.Status.RESOLVED, production.outcome_reason
    assert shadow.dry_run and shadow.replay_of_id == production.pk
    assert shadow.status == Run.Status.RESOLVED, shadow.outcome_reason
    # Paid once, by production; the shadow's refund only "would have executed".
    assert ProviderRefund.objects.filter(payment_ref=order.payment_ref).count() == 1
    assert not Effect.objects.filter(run=shadow).exists()
    assert shadow_summary().agreement_rate == 100.0
