"""Circuit breakers and retry budgets: runs wait for a failing downstream, not hammer it."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from agentops.integrations.errors import ProviderRejected, ProviderUnavailable
from agentops.integrations.llm.offline import OfflineModel
from agentops.models import Effect, Run
from agentops.runtime.breaker import CLOSED, HALF_OPEN, OPEN, Breaker, breaker_for
from agentops.runtime.loop import WAITING, run_advance
from agentops.simgateway.models import ProviderRefund, ScriptedFault
from tests.runtime.helpers import conversation_of_spans, refund_in_ledger


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _breaker(clock, **overrides) -> Breaker:
    options = {
        "failure_threshold": 3,
        "failure_rate": 0.5,
        "window_seconds": 30.0,
        "cool_down_seconds": 10.0,
        "budget_ratio": 0.2,
        "budget_min_retries": 2,
        "clock": clock,
    }
    return Breaker(**(options | overrides))


def _calls(breaker: Breaker, outcomes: list[bool]) -> None:
    for ok in outcomes:
        assert breaker.admit(retry=False).allowed
        breaker.record(ok=ok)


# --- the state machine -------------------------------------------------------------


def test_it_opens_after_enough_failures_at_the_failure_rate():
    clock = Clock()
    breaker = _breaker(clock)

    _calls(breaker, [False, False])
    assert breaker.state == CLOSED
    _calls(breaker, [False])

    assert breaker.state == OPEN
    verdict = breaker.admit(retry=False)
    assert not verdict.allowed
    assert verdict.reason == "circuit_open"
    assert verdict.wait_seconds == pytest.approx(10.0)


def test_failures_below_the_rate_keep_it_closed():
    clock = Clock()
    breaker = _breaker(clock)

    _calls(breaker, [True, True, True, False, True, True, False, True, False])  # 3 of 9

    assert breaker.state == CLOSED


def test_failures_older_than_the_window_are_forgotten():
    clock = Clock()
    breaker = _breaker(clock)
    _calls(breaker, [False, False])

    clock.now += 31
    _calls(breaker, [False])

    assert breaker.state == CLOSED


def test_after_the_cool_down_one_probe_goes_and_its_success_closes_the_breaker():
    clock = Clock()
    breaker = _breaker(clock)
    _calls(breaker, [False, False, False])

    clock.now += 9
    assert not breaker.admit(retry=False).allowed
    clock.now += 1
    assert breaker.state == HALF_OPEN
    probe = breaker.admit(retry=False)
    other = breaker.admit(retry=False)

    assert probe.allowed and probe.probe and probe.state == HALF_OPEN
    assert not other.allowed and other.reason == "circuit_open"
    assert breaker.record(ok=True) == CLOSED
    assert breaker.admit(retry=False).allowed


def test_a_failed_probe_opens_it_for_another_cool_down():
    clock = Clock()
    breaker = _breaker(clock)
    _calls(breaker, [False, False, False])
    clock.now += 10

    assert breaker.admit(retry=False).probe
    assert breaker.record(ok=False) == OPEN
    clock.now += 5
    verdict = breaker.admit(retry=False)

    assert not verdict.allowed
    assert verdict.wait_seconds == pytest.approx(5.0)


def test_a_probe_that_never_answers_is_replaced_after_a_cool_down():
    clock = Clock()
    breaker = _breaker(clock)
    _calls(breaker, [False, False, False])
    clock.now += 10
    assert breaker.admit(retry=False).probe  # its worker died: no record() ever comes

    clock.now += 10

    assert breaker.admit(retry=False).probe


def test_the_retry_budget_allows_the_minimum_on_a_quiet_system():
    breaker = _breaker(Clock())
    assert breaker.admit(retry=False).allowed

    first, second, third = (breaker.admit(retry=True) for _ in range(3))

    assert first.allowed and second.allowed
    assert not third.allowed
    assert third.reason == "retry_budget"
    assert (third.retries, third.calls, third.retries_allowed) == (2, 1, 2)


def test_the_retry_budget_grows_with_first_attempts_and_slides_with_the_window():
    clock = Clock()
    breaker = _breaker(clock)
    _calls(breaker, [True] * 20)  # 20 % of 20 calls: 4 retries

    granted = [breaker.admit(retry=True).allowed for _ in range(5)]
    assert granted == [True, True, True, True, False]

    clock.now += 31  # the calls and retries leave the window; the minimum is left
    assert [breaker.admit(retry=True).allowed for _ in range(3)] == [True, True, False]


def test_an_attempt_span_records_the_budget_only_once_retries_are_spent():
    clock = Clock()
    breaker = _breaker(clock)

    first = breaker.admit(retry=False).attributes("payments:stripe")
    assert first == {"downstream": "payments:stripe", "breaker.state": CLOSED}

    retried = breaker.admit(retry=True).attributes("payments:stripe")
    assert retried["retry_budget.retries"] == 1
    assert (retried["retry_budget.calls"], retried["retry_budget.allowed"]) == (1, 2)
    assert "breaker.probe" not in retried
    breaker.admit(retry=True)
    refused = breaker.admit(retry=True)
    assert refused.attributes("payments:stripe")["retry_budget.retries"] == 2

    for _ in range(3):  # three failures of four calls in the window open it
        breaker.admit(retry=False)
        breaker.record(ok=False)
    clock.now += 31  # past the cool-down and the budget's window: a probe, no retries
    probe = breaker.admit(retry=False).attributes("payments:stripe")
    assert probe == {
        "downstream": "payments:stripe",
        "breaker.state": HALF_OPEN,
        "breaker.probe": True,
    }


def test_a_refusal_by_the_budget_records_its_counts_even_with_no_retry_spent():
    # No minimum and no first call in the window: the budget allows no retry at all.
    breaker = _breaker(Clock(), budget_min_retries=0)

    refused = breaker.admit(retry=True)

    assert refused.reason == "retry_budget"
    assert refused.attributes("model:anthropic") == {
        "downstream": "model:anthropic",
        "breaker.state": CLOSED,
        "retry_budget.retries": 0,
        "retry_budget.calls": 0,
        "retry_budget.allowed": 0,
    }


def test_breakers_are_per_downstream_and_made_from_the_settings(settings):
    settings.BREAKER_FAILURE_THRESHOLD = 1
    model, payments = breaker_for("model:anthropic"), breaker_for("payments:stripe")

    model.admit(retry=False)
    model.record(ok=False)

    assert breaker_for("model:anthropic") is model
    assert model.state == OPEN
    assert payments.state == CLOSED


# --- runs ----------------------------------------------------------------------------


class FlakyModel:
    """The offline model behind a switch: while down, every call is a 503."""

    def __init__(self) -> None:
        self.down = False
        self.calls = 0
        self.model = OfflineModel()

    def create(self, **kwargs):
        self.calls += 1
        if self.down:
            raise ProviderUnavailable("503 service unavailable", status_code=503)
        return self.model.create(**kwargs)


@pytest.fixture
def flaky(monkeypatch):
    model = FlakyModel()
    monkeypatch.setattr("agentops.runtime.loop.get_model_client", lambda name: model)
    return model


@pytest.fixture
def tight(settings):
    settings.BREAKER_FAILURE_THRESHOLD = 2
    settings.BREAKER_FAILURE_RATE = 0.5
    settings.BREAKER_COOL_DOWN_SECONDS = 0.05
    settings.RETRY_MAX_ATTEMPTS = 4
    return settings


def _wait_until_due(run_ids) -> None:
    """Sleep until every parked run's lease (its retry time) has passed."""
    leases = Run.objects.filter(pk__in=run_ids).values_list("lease_expires_at", flat=True)
    due = max((lease for lease in leases if lease is not None), default=timezone.now())
    remaining = (due - timezone.now()).total_seconds()
    if remaining > 0:
        time.sleep(remaining + 0.01)


def test_an_open_model_breaker_parks_runs_without_calling_and_they_finish_when_it_returns(
    tight, flaky, make_order, submit
):
    tight.BREAKER_COOL_DOWN_SECONDS = 30
    clock = Clock()
    breaker_for("model:offline").clock = clock  # the cool-down ends when the test says
    runs = [submit(f"Please refund {make_order().order_id}, it broke.") for _ in range(3)]
    flaky.down = True

    statuses = [run_advance(run_id=run.pk, worker="w1") for run in runs]

    # Two failures opened the breaker; the other runs did not call at all.
    assert statuses == [WAITING] * 3
    assert flaky.calls == 2
    for run in Run.objects.filter(pk__in=[r.pk for r in runs]):
        # Nobody holds it until the cool-down is over (and a half-second margin).
        assert run.status == Run.Status.RUNNING
        assert run.lease_owner == ""
        wait_seconds = (run.lease_expires_at - run.updated_at).total_seconds()
        assert wait_seconds == pytest.approx(30.5, abs=0.01)
        wait = run.spans.get(name="circuit_open model:offline")
        assert wait.kind == "policy"
        assert wait.output["breaker_state"] == OPEN
        assert wait.output["retry_at"] == run.lease_expires_at.isoformat()
        assert wait.attributes["breaker.state"] == OPEN
    attempts = list(runs[0].spans.filter(kind="model").order_by("attempt"))
    assert [s.attributes["breaker.state"] for s in attempts] == [CLOSED, CLOSED]
    assert attempts[-1].attributes["breaker.state_after"] == OPEN
    assert attempts[-1].attributes["retry_budget.retries"] == 1

    flaky.down = False
    clock.now += 30
    # The countdown is over: the tasks come back and may take the runs again.
    Run.objects.filter(pk__in=[r.pk for r in runs]).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    for run in runs:
        run_advance(run_id=run.pk, worker="w2")

    for run in Run.objects.filter(pk__in=[r.pk for r in runs]):
        assert run.status == Run.Status.RESOLVED, run.outcome_reason
    assert breaker_for("model:offline").state == CLOSED
    probe = Run.objects.get(pk=runs[0].pk).spans.filter(kind="model").order_by("started_at")[2]
    assert probe.attributes["breaker.state"] == HALF_OPEN
    assert probe.attributes["breaker.probe"] is True


def test_a_parked_run_cannot_be_taken_before_its_retry_time(tight, flaky, submit):
    run = submit("Where is my parcel?")
    flaky.down = True
    tight.BREAKER_COOL_DOWN_SECONDS = 60

    assert run_advance(run_id=run.pk, worker="w1") == WAITING

    assert run_advance(run_id=run.pk, worker="w2") == "not_claimed"
    assert flaky.calls == 2


def test_a_terminal_answer_does_not_count_against_the_downstream(tight, scripted, submit):
    scripted(*[ProviderRejected("400 bad request", code="invalid_request")] * 3)
    runs = [submit("Hello?") for _ in range(3)]

    statuses = [run_advance(run_id=run.pk, worker="w1") for run in runs]

    assert statuses == [Run.Status.FAILED] * 3
    assert breaker_for("model:offline").state == CLOSED


def test_a_spent_retry_budget_parks_the_run_instead_of_retrying(tight, scripted, submit):
    tight.BREAKER_FAILURE_THRESHOLD = 100  # only the budget speaks here
    tight.RETRY_BUDGET_MIN_RETRIES = 1
    model = scripted(
        ProviderUnavailable("503", status_code=503),
        ProviderUnavailable("503", status_code=503),
        [{"type": "text", "text": "unused"}],
    )
    run = submit("Hello?")

    assert run_advance(run_id=run.pk, worker="w1") == WAITING

    assert len(model.calls) == 2  # the first attempt and the one retry the budget had
    wait = run.spans.get(name="retry_budget model:offline")
    assert wait.output["reason"] == "retry_budget"
    assert wait.attributes["retry_budget.retries"] == 1
    assert wait.attributes["retry_budget.allowed"] == 1
    run.refresh_from_db()
    assert (run.status, run.lease_owner) == (Run.Status.RUNNING, "")


def test_a_run_that_waited_too_often_is_escalated(tight, flaky, submit):
    tight.RUN_MAX_PARKS = 2
    tight.BREAKER_COOL_DOWN_SECONDS = 0.01
    run = submit("Where is my parcel?")
    flaky.down = True

    outcomes = []
    for _ in range(3):
        _wait_until_due([run.pk])
        outcomes.append(run_advance(run_id=run.pk, worker="w1"))

    assert outcomes == [WAITING, WAITING, Run.Status.ESCALATED]
    run.refresh_from_db()
    assert "model:offline stayed unavailable" in run.outcome_reason


def test_a_refund_whose_outcome_was_unknown_is_recovered_not_repeated_after_the_wait(
    tight, make_order, submit
):
    order = make_order(total_cents=2000)
    # The first attempt is a 500; the second commits the refund and loses the answer.
    # Two failures open the payments breaker: the run parks with the outcome unknown.
    ScriptedFault.objects.create(payment_ref=order.payment_ref, kind="server_error", remaining=1)
    ScriptedFault.objects.create(
        payment_ref=order.payment_ref, kind="timeout_after_commit", remaining=1
    )
    run = submit(f"Please refund {order.order_id}, it broke.")

    assert run_advance(run_id=run.pk, worker="w1") == WAITING
    effect = Effect.objects.get(tool="issue_refund")
    assert effect.status == Effect.Status.STARTED
    assert ProviderRefund.objects.filter(payment_ref=order.payment_ref).count() == 1
    assert run.spans.filter(name="circuit_open payments:simulated").exists()

    _wait_until_due([run.pk])
    assert run_advance(run_id=run.pk, worker="w2") == Run.Status.RESOLVED

    effect.refresh_from_db()
    assert effect.status == Effect.Status.SUCCEEDED
    assert ProviderRefund.objects.filter(payment_ref=order.payment_ref).count() == 1
    recovered = run.spans.get(kind="tool", name="issue_refund", status="ok")
    assert recovered.attributes["ledger"] == "recovered from provider"


def test_a_refund_parked_before_its_first_attempt_counts_no_attempt_and_pays_once_later(
    tight, make_order, submit
):
    tight.BREAKER_COOL_DOWN_SECONDS = 30
    clock = Clock()
    payments = breaker_for("payments:simulated")
    payments.clock = clock
    _calls(payments, [False, False])  # other runs' failures opened it
    assert payments.state == OPEN
    order = make_order(total_cents=2000)
    run = submit(f"Please refund {order.order_id}, it broke.")

    assert run_advance(run_id=run.pk, worker="w1") == WAITING

    # Parked before the ledger counted anything: no attempt, no started span, no call.
    assert not Effect.objects.filter(tool="issue_refund").exists()
    assert not run.spans.filter(kind="tool", name="issue_refund").exists()
    assert not ProviderRefund.objects.filter(payment_ref=order.payment_ref).exists()
    assert run.spans.filter(name="circuit_open payments:simulated").exists()

    clock.now += 30  # the cool-down is over: the breaker lets one probe through
    Run.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert run_advance(run_id=run.pk, worker="w2") == Run.Status.RESOLVED

    effect = Effect.objects.get(tool="issue_refund")
    assert (effect.status, effect.attempts) == (Effect.Status.SUCCEEDED, 1)
    [attempt] = run.spans.filter(kind="tool", name="issue_refund")
    # Admitted once, as the half-open probe, before the ledger counted the attempt.
    assert attempt.attributes["breaker.probe"] is True
    assert attempt.attributes["ledger"] == "new"
    assert ProviderRefund.objects.filter(payment_ref=order.payment_ref).count() == 1
    assert payments.state == CLOSED
    # The model step that asked for the refund was saved with the wait, its turns with it:
    # the conversation is the one the model spans recorded, no call asked again.
    run.refresh_from_db()
    assert conversation_of_spans(run) == run.messages


def test_a_refund_the_ledger_holds_is_answered_from_it_while_the_breaker_is_open(
    tight, make_order, submit, monkeypatch
):
    """A refund's check passes and its key is taken to be new, unread; if the breaker
    then refuses the first attempt, the ledger is read after all: a refund it holds
    (made by an earlier task, the shop's record of it lost) answers, and the run
    does not wait for the provider."""
    from agentops.runtime import loop

    tight.BREAKER_COOL_DOWN_SECONDS = 30
    payments = breaker_for("payments:simulated")
    payments.clock = Clock()
    order = make_order(total_cents=2000)
    run = submit(f"Please refund {order.order_id}, it broke.")
    evaluate = loop.policy_evaluate_call

    def made_earlier_and_the_provider_down(*, tool, resolved, run):
        if tool == "issue_refund":
            refund_in_ledger(run=run, resolved=resolved, refund_id="re_earlier")
            _calls(payments, [False, False])
            assert payments.state == OPEN
        return evaluate(tool=tool, resolved=resolved, run=run)

    monkeypatch.setattr(loop, "policy_evaluate_call", made_earlier_and_the_provider_down)

    status = run_advance(run_id=run.pk, worker="w1")
    run.refresh_from_db()
    assert status == Run.Status.RESOLVED, run.outcome_reason

    answered = run.spans.get(kind="tool", name="issue_refund")
    assert answered.attributes["replayed_from_ledger"] is True
    assert answered.output["refund_id"] == "re_earlier"
    assert not run.spans.filter(name="circuit_open payments:simulated").exists()
    assert not ProviderRefund.objects.exists()
    assert Effect.objects.filter(tool="issue_refund").count() == 1


def test_a_read_tools_answer_is_kept_when_the_next_model_call_parks(
    tight, scripted, make_order, submit
):
    """The lookup's answer waits for the run's next write; parking is that write."""
    from tests.runtime.conftest import tool_use

    tight.BREAKER_FAILURE_THRESHOLD = 1
    tight.BREAKER_FAILURE_RATE = 0.1
    order = make_order()
    lookup = tool_use("lookup_order", {"order_id": order.order_id})
    model = scripted([lookup], ProviderUnavailable("503", status_code=503))
    run = submit(f"Where is {order.order_id}?")

    assert run_advance(run_id=run.pk, worker="w1") == WAITING

    assert len(model.calls) == 2
    run.refresh_from_db()
    assert [r["tool_use_id"] for r in run.tool_results] == [lookup["id"]]
    assert run.spans.filter(kind="tool", name="lookup_order", status="ok").count() == 1
    assert run.spans.filter(kind="validate", name="lookup_order").count() == 1
