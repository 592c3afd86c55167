"""Two workers racing for the same run: one conditional UPDATE, one winner."""

from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import pytest
from django.db import connection

from agentops.models import Run
from agentops.runtime.loop import run_advance
from agentops.simgateway.models import ProviderRefund
from traces.models import Span


@pytest.mark.django_db(transaction=True)
def test_ten_workers_racing_for_one_run_advance_it_once(make_order, submit):
    order = make_order(total_cents=2200)
    run = submit(f"Please refund {order.order_id}")
    start = Barrier(10)

    def race(n: int) -> str:
        try:
            start.wait()
            return run_advance(run_id=run.pk, worker=f"racer-{n}")
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=10) as pool:
        outcomes = list(pool.map(race, range(10)))

    assert sorted(outcomes) == ["not_claimed"] * 9 + [Run.Status.RESOLVED]
    assert ProviderRefund.objects.filter(payment_ref=order.payment_ref).count() == 1
    assert Span.objects.filter(run=run, kind="triage").count() == 1
