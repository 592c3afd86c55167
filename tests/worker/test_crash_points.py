"""A real worker process killed with SIGKILL at each crash point; another one finishes the run.

Worker A runs with CRASH_POINT set and dies there (agentops.runtime.crashpoints).
It is stopped, its lease is left to expire, and worker B (no crash point) is
started; the re-queued message, or the sweeper, reaches it and B resumes the run
at its first unfinished step. The provider ignores idempotency keys
(GATEWAY_LEGACY), so the ledger alone must stop a second refund, and it is
counted at the provider.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from agentops.bench.runner import tickets_create
from agentops.models import Effect, Run
from agentops.runtime import crashpoints
from agentops.runtime.sweeper import runs_sweep_stale
from agentops.services import ticket_submit
from agentops.shop.models import Customer, Order, Refund
from agentops.simgateway.models import ProviderRefund
from tests.test_settings import manage
from tests.worker.conftest import wait_for_runs
from traces.models import Span
from traces.selectors import run_spans_list

pytestmark = [pytest.mark.worker]

LEASE_SECONDS = 3
ENV = {"RUN_LEASE_SECONDS": str(LEASE_SECONDS), "GATEWAY_LEGACY": "true"}
# The standard refund run: model → lookup_order → model → issue_refund → model →
# send_reply → model.
MODEL_STEPS = 4
MODEL_POINTS = (crashpoints.BEFORE_MODEL_CALL, crashpoints.AFTER_MODEL_CALL)


def _order() -> Order:
    customer, _ = Customer.objects.get_or_create(email="crash@example.com", defaults={"name": "C"})
    n = Order.objects.count() + 40001
    return Order.objects.create(
        order_id=f"ORD-{n}",
        customer=customer,
        total_cents=6000,  # more than the refund: a second refund would be accepted
        currency="USD",
        status=Order.Status.DELIVERED,
        placed_at=timezone.now() - timedelta(days=4),
        delivered_at=timezone.now() - timedelta(days=1),
        payment_ref=f"pi_crash{n:018d}",
    )


def _wait_for_the_kill(worker, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "signal 9 (SIGKILL)" in worker.log.read_text():
            return
        time.sleep(0.1)
    raise AssertionError(f"the worker did not crash:\n{worker.log.read_text()[-3000:]}")


def _crash_then_resume(start_worker, point: str) -> tuple[Run, Order]:
    crashing = start_worker(env={**ENV, "CRASH_POINT": point}, concurrency=1)
    order = _order()
    run = ticket_submit(
        customer_email="crash@example.com",
        subject="Cracked mug",
        body=f"The mug in {order.order_id} arrived cracked. Please refund $20.00 for it.",
    ).run
    _wait_for_the_kill(crashing)
    # Its restarted pool process would take the run again once the lease ran out, and
    # crash again at the same point: kill the whole worker now, not with a warm shutdown
    # that may take longer than the lease on a loaded machine.
    crashing.kill()

    interrupted = Run.objects.get(pk=run.pk)
    assert interrupted.status == Run.Status.RUNNING  # held by a dead worker
    dead_worker = interrupted.lease_owner
    assert dead_worker
    open_spans = interrupted.spans.filter(status=Span.Status.STARTED, ended_at=None)
    # Spans are written once, finished: the dead worker left none open. The trace shows
    # what it had not written open, from the run (its root) and, for a call cut short,
    # from the ledger row that counted the attempt.
    assert not open_spans.exists()
    assert not interrupted.spans.filter(kind=Span.Kind.RUN).exists()
    shown_open = [
        (s.kind, s.name, s.started_at)
        for s in run_spans_list(run=interrupted)
        if s.status == Span.Status.STARTED
    ]
    if point in MODEL_POINTS:
        assert not interrupted.spans.filter(kind=Span.Kind.MODEL).exists()
        assert shown_open == [(Span.Kind.RUN, "run", interrupted.started_at)]
    else:
        refund = Effect.objects.get(tool="issue_refund", ticket=interrupted.ticket)
        assert refund.status == Effect.Status.STARTED
        assert shown_open == [
            (Span.Kind.RUN, "run", interrupted.started_at),
            (Span.Kind.TOOL, "issue_refund", refund.updated_at),
        ]
    assert not _takeovers(interrupted)
    time.sleep(LEASE_SECONDS + 0.5)  # the dead worker's lease expires

    start_worker(env=ENV, concurrency=1)
    # Worker A's message was re-queued when its pool process died (acks_late,
    # reject_on_worker_lost); the sweeper (beat, every 30 s) would find the run anyway.
    runs_sweep_stale()
    wait_for_runs(timeout=60)
    run.refresh_from_db()
    assert run.status == Run.Status.RESOLVED, run.outcome_reason
    [root] = run.spans.filter(kind=Span.Kind.RUN)  # written once, by the worker that ended it
    assert (root.status, root.started_at) == (Span.Status.OK, run.started_at)
    [takeover] = _takeovers(run)
    assert takeover.attributes["previous_worker"] == dead_worker
    assert takeover.attributes["resumed_by"] not in ("", dead_worker)
    assert takeover.attributes["lease_expired_at"] == interrupted.lease_expires_at.isoformat()
    assert takeover.error_message == (
        f"worker {dead_worker} stopped at step {takeover.step} without recording an "
        f"outcome; resumed by {takeover.attributes['resumed_by']}"
    )
    return run, order


def _ok_model_spans_per_step(run: Run) -> dict[int, int]:
    spans = run.spans.filter(kind=Span.Kind.MODEL, status=Span.Status.OK)
    return {step: spans.filter(step=step).count() for step in range(1, run.model_calls + 1)}


def _interrupted(run: Run) -> list[Span]:
    """Spans the dead worker left open, marked by the worker that took over."""
    return list(run.spans.filter(error_message__startswith="interrupted:"))


def _takeovers(run: Run) -> list[Span]:
    """The span a takeover writes: the step a dead worker left without an outcome."""
    return list(
        run.spans.filter(
            kind=Span.Kind.POLICY,
            name="interrupted",
            status=Span.Status.ERROR,
            error_class=Span.ErrorClass.TRANSIENT,
        )
    )


def _paid_once_at_the_provider(run: Run, order: Order) -> None:
    refunds = ProviderRefund.objects.filter(payment_ref=order.payment_ref)
    assert [r.amount_cents for r in refunds] == [2000]
    assert refunds.get().metadata["ticket"] == str(run.ticket.code)
    assert Refund.objects.filter(order=order).count() == 1  # the shop's own record
    effect = Effect.objects.get(tool="issue_refund", ticket=run.ticket)
    assert effect.status == Effect.Status.SUCCEEDED
    assert effect.provider_ref == refunds.get().refund_id
    replies = Effect.objects.filter(tool="send_reply", ticket=run.ticket)
    assert [(r.status, r.attempts) for r in replies] == [(Effect.Status.SUCCEEDED, 1)]
    # Nothing is left open: every step span of the resolved run ended or is marked.
    assert not run.spans.filter(status=Span.Status.STARTED).exists()


def test_a_worker_killed_before_a_model_call_is_resumed_without_a_second_paid_call(
    start_worker,
):
    run, order = _crash_then_resume(start_worker, crashpoints.BEFORE_MODEL_CALL)

    assert run.model_calls == MODEL_STEPS
    assert _ok_model_spans_per_step(run) == {1: 1, 2: 1, 3: 1, 4: 1}
    # The request of step 1 was never sent and left no span; the takeover says so.
    [cut] = _takeovers(run)
    assert cut.step == 1
    assert _interrupted(run) == []
    assert run.spans.filter(kind=Span.Kind.MODEL).count() == MODEL_STEPS
    assert run.spans.filter(kind=Span.Kind.TRIAGE).count() == 1  # triage is not redone
    _paid_once_at_the_provider(run, order)


def test_a_worker_killed_after_a_model_answered_asks_again_only_for_that_step(start_worker):
    run, order = _crash_then_resume(start_worker, crashpoints.AFTER_MODEL_CALL)

    # The answer of step 1 died with the worker, so step 1 is asked again (the only
    # call made twice, for a step that never completed); every other step once.
    assert run.model_calls == MODEL_STEPS
    assert _ok_model_spans_per_step(run) == {1: 1, 2: 1, 3: 1, 4: 1}
    # The answer that died with the worker left no model span; the takeover records step 1.
    [cut] = _takeovers(run)
    assert cut.step == 1
    assert _interrupted(run) == []
    assert run.spans.filter(kind=Span.Kind.MODEL).count() == MODEL_STEPS
    _paid_once_at_the_provider(run, order)


def test_a_worker_killed_between_the_ledger_write_and_the_gateway_call_pays_once(
    start_worker,
):
    run, order = _crash_then_resume(start_worker, crashpoints.AFTER_LEDGER_WRITE)

    # No completed model step is repeated: one model span per step, none interrupted.
    assert _ok_model_spans_per_step(run) == {1: 1, 2: 1, 3: 1, 4: 1}
    assert run.spans.filter(kind=Span.Kind.MODEL).count() == MODEL_STEPS
    [cut] = _interrupted(run)
    assert (cut.kind, cut.name, cut.status) == ("tool", "issue_refund", "error")
    assert _takeovers(run)[0].step == cut.step  # the refund's step
    # The provider had nothing: the resumed worker asked, found nothing, and paid once.
    effect = Effect.objects.get(tool="issue_refund", ticket=run.ticket)
    assert effect.attempts == 2
    _paid_once_at_the_provider(run, order)


def test_a_worker_killed_after_the_gateway_committed_recovers_the_refund_instead_of_paying(
    start_worker,
):
    run, order = _crash_then_resume(start_worker, crashpoints.AFTER_GATEWAY_COMMIT)

    assert _ok_model_spans_per_step(run) == {1: 1, 2: 1, 3: 1, 4: 1}
    assert run.spans.filter(kind=Span.Kind.MODEL).count() == MODEL_STEPS
    [cut] = _interrupted(run)
    assert (cut.kind, cut.name) == ("tool", "issue_refund")
    assert _takeovers(run)[0].step == cut.step  # the refund's step
    # The ledger said "started"; the provider's records (searched by the key in the
    # metadata, since it ignores keys) held the refund: it is recorded, not made again.
    effect = Effect.objects.get(tool="issue_refund", ticket=run.ticket)
    assert effect.attempts == 1
    recovered = run.spans.get(kind=Span.Kind.TOOL, name="issue_refund", status=Span.Status.OK)
    assert recovered.attributes["ledger"] == "recovered from provider"
    _paid_once_at_the_provider(run, order)


def test_runs_whose_task_was_lost_are_found_by_the_sweeper_and_finished(start_worker, settings):
    """A message lost with the broker, and one acked by a worker that then died."""
    queued, running = tickets_create(2, tag="lost")
    stale = timezone.now() - timedelta(seconds=settings.RUN_STALE_SECONDS + 5)
    # No message was ever enqueued for either: as after a broker restart.
    Run.objects.filter(pk=queued).update(updated_at=stale)
    Run.objects.filter(pk=running).update(
        status=Run.Status.RUNNING,
        lease_owner="gone:1",
        lease_expires_at=timezone.now() - timedelta(seconds=1),
    )
    start_worker(env=ENV, concurrency=1)
    time.sleep(1.0)
    assert set(Run.objects.values_list("status", flat=True)) == {"queued", "running"}

    # Beat's task, called here so that its messages go to this test's queue.
    assert sorted(runs_sweep_stale()) == sorted([queued, running])
    wait_for_runs(timeout=60)
    statuses = dict(Run.objects.values_list("pk", "status"))
    assert statuses == {queued: Run.Status.RESOLVED, running: Run.Status.RESOLVED}
    assert ProviderRefund.objects.count() == 2


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CRASH_POINT": "after_lunch"}, "CRASH_POINT must be one of before_model_call"),
        (
            {"CRASH_POINT": "after_model_call", "HTTPS": "true"},
            "CRASH_POINT is a test hook that kills workers",
        ),
        (
            {
                "CRASH_POINT": "after_model_call",
                "PAYMENTS_BACKEND": "stripe",
                "STRIPE_API_KEY": "sk_test_x",
            },
            "CRASH_POINT is a test hook that kills workers",
        ),
    ],
)
def test_a_crash_point_is_refused_in_production_and_when_misspelt(tmp_path, env, message):
    result = manage("check", env=env, tmp_path=tmp_path)

    assert result.returncode != 0
    assert f"django.core.exceptions.ImproperlyConfigured: {message}" in result.stderr
