"""The regression set and shadow mode on real runs: the offline model and the replay engine."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from agentops.models import Effect, Run
from agentops.simgateway.models import ProviderRefund
from agentops.tasks import advance_run
from evals.models import EvalResult, ShadowRun, ShadowSetting
from evals.selectors import shadow_summary
from evals.services import case_create, shadow_after_production
from tests.runtime.helpers import advance

pytestmark = pytest.mark.django_db


@pytest.fixture
def refunded(make_order, submit):
    """A production run of the offline model: looked the order up, refunded 25.00, replied."""
    order = make_order(total_cents=2500)
    run = advance(submit(f"Please refund my order {order.order_id}, it arrived broken."))
    assert run.status == Run.Status.RESOLVED, run.outcome_reason
    return run


def _case(run, amount_cents):
    return case_create(
        run=run,
        user=None,
        name=f"refund {amount_cents}",
        expected_tool_calls=[{"tool": "issue_refund", "args": {"amount_cents": amount_cents}}],
        forbidden_tools=["escalate"],
        expected_status="resolved",
    )


def _evals() -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("evals", stdout=out, stderr=StringIO())
    except CommandError as failed:
        return failed.returncode, out.getvalue()
    return 0, out.getvalue()


def test_evals_pass_on_a_real_dry_run_and_execute_nothing(refunded):
    case = _case(refunded, 2500)
    assert [r["tool"] for r in case.recorded_tool_results] == ["lookup_order"]
    # The answer itself, as the trace reads it, not the span's pointer to the turn.
    [recorded] = case.recorded_tool_results
    assert recorded["result"]["total_cents"] == 2500 and "tool_result" not in recorded["result"]
    effects, refunds = Effect.objects.count(), ProviderRefund.objects.count()

    status, output = _evals()

    assert status == 0, output
    assert "1 of 1 passed, 0 failed" in output
    result = EvalResult.objects.get()
    replayed = result.run
    assert replayed.replay_of == refunded and replayed.dry_run and replayed.is_final
    # Nothing executed: no ledger row, no provider refund; the refund "would have" happened.
    assert (Effect.objects.count(), ProviderRefund.objects.count()) == (effects, refunds)
    refund = replayed.spans.get(kind="tool", name="issue_refund")
    assert refund.attributes["dry_run"] is True
    # The recorded lookup was fed back instead of asking the shop again.
    lookup = replayed.spans.get(kind="tool", name="lookup_order")
    assert lookup.attributes["source"] == "given"


def test_evals_exit_non_zero_when_a_case_fails(refunded):
    _case(refunded, 2500)
    _case(refunded, 999)

    status, output = _evals()

    assert status == 1
    assert "1 of 2 passed, 1 failed" in output
    assert "expected issue_refund(amount_cents=999), not called" in output


def test_a_finished_production_run_gets_a_dry_run_shadow_that_agrees(
    refunded, enqueued_runs, django_capture_on_commit_callbacks
):
    ShadowSetting.objects.create(pk=1, enabled=True, share_percent=100, model="offline")
    effects, refunds = Effect.objects.count(), ProviderRefund.objects.count()

    with django_capture_on_commit_callbacks(execute=True):
        shadow = shadow_after_production(run_id=refunded.pk)

    assert shadow.pk in enqueued_runs  # like any run, after commit
    assert shadow.dry_run and shadow.replay_of == refunded
    shadow = advance(shadow)
    assert shadow.status == Run.Status.RESOLVED, shadow.outcome_reason
    assert (Effect.objects.count(), ProviderRefund.objects.count()) == (effects, refunds)
    summary = shadow_summary()
    assert (summary.compared, summary.agreed, summary.agreement_rate) == (1, 1, 100.0)


def test_the_run_task_starts_the_shadow_only_inside_the_share(make_order, submit, enqueued_runs):
    ShadowSetting.objects.create(pk=1, enabled=True, share_percent=0)
    order = make_order(total_cents=1500)
    outside = submit(f"Please refund {order.order_id}")
    advance_run.run(outside.pk)  # the task's body, as a worker runs it
    assert not ShadowRun.objects.exists()

    ShadowSetting.objects.filter(pk=1).update(share_percent=100)
    order = make_order(total_cents=1500)
    inside = submit(f"Please refund {order.order_id}")
    advance_run.run(inside.pk)

    link = ShadowRun.objects.get()
    assert link.production_id == inside.pk and link.shadow.dry_run
    advance_run.run(link.shadow.pk)  # the shadow's own end starts no shadow of a shadow
    assert ShadowRun.objects.count() == 1
