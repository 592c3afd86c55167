"""The loop's safeguards with a scripted model: bad tool calls, held replies, errors, crashes."""

import dataclasses
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from agentops.integrations.errors import ProviderRejected, ProviderUnavailable, RateLimited
from agentops.models import Effect, Run, Turn
from agentops.runtime import loop
from agentops.runtime.loop import LeaseLost, Runner, _claim, run_advance
from agentops.runtime.sweeper import runs_sweep_stale
from agentops.simgateway.models import ProviderRefund
from tests.runtime.conftest import text, tool_use
from tests.runtime.helpers import advance
from traces.models import Span
from traces.selectors import run_spans_list, span_get

pytestmark = pytest.mark.django_db


def results(run):
    """The tool_result blocks the model was given, in order."""
    blocks = []
    for message in run.messages:
        if message["role"] == "user" and isinstance(message["content"], list):
            blocks.extend(message["content"])
    return blocks


def test_unknown_tools_bad_inputs_and_bad_arguments_go_back_to_the_model(scripted, submit):
    scripted(
        [tool_use("delete_database", {}, "t1")],
        [tool_use("lookup_order", "ORD-1", "t2")],
        [tool_use("issue_refund", {"order_id": "ORD-1", "amount_cents": "lots"}, "t3")],
        [tool_use("issue_refund", {"order_id": "ORD-1", "amount_cents": -5, "reason": "x"}, "t4")],
        [text("I give up.")],
    )
    run = advance(submit("refund"))

    errors = results(run)
    assert [b["is_error"] for b in errors] == [True, True, True, True]
    assert "Unknown tool 'delete_database'" in errors[0]["content"]
    assert "must be a JSON object" in errors[1]["content"]
    assert "amount_cents" in errors[2]["content"] and "reason" in errors[2]["content"]
    assert "greater than 0" in errors[3]["content"]
    assert not Effect.objects.exists()
    assert run.spans.filter(kind="validate", error_class="validation").count() == 4
    # No reply was sent, so the run is not resolved.
    assert run.status == Run.Status.ESCALATED
    assert "without sending the customer a reply" in run.outcome_reason


def test_a_reply_claiming_a_refund_the_ledger_does_not_hold_is_held(scripted, submit):
    scripted([tool_use("send_reply", {"body": "Good news: I've issued a refund of $40.00."}, "r1")])
    run = advance(submit("refund my order"))

    assert run.status == Run.Status.ESCALATED
    assert "Reply held for review" in run.outcome_reason
    assert mail.outbox == []
    assert not Effect.objects.filter(tool="send_reply").exists()
    assert run.spans.get(kind="reply").error_class == "terminal"


def test_a_reply_naming_another_amount_than_the_ledger_holds_is_held(scripted, make_order, submit):
    order = make_order(total_cents=3000)
    scripted(
        [
            tool_use(
                "issue_refund",
                {"order_id": order.order_id, "amount_cents": 1000, "reason": "damaged"},
                "r1",
            )
        ],
        [tool_use("send_reply", {"body": "I've issued a refund of $30.00 for your order."}, "r2")],
    )
    run = advance(submit(f"refund {order.order_id}"))

    assert run.status == Run.Status.ESCALATED
    assert "[3000]" in run.outcome_reason and "[1000]" in run.outcome_reason
    assert ProviderRefund.objects.count() == 1
    assert mail.outbox == []


def test_an_honest_reply_about_a_failure_is_sent(scripted, submit):
    scripted(
        [tool_use("send_reply", {"body": "I'm sorry, we could not issue a refund yet."}, "r1")],
        [text("done")],
    )
    run = advance(submit("refund"))

    assert run.status == Run.Status.RESOLVED
    assert len(mail.outbox) == 1


def test_a_model_that_stays_unavailable_escalates_after_bounded_retries(scripted, submit, settings):
    settings.RETRY_MAX_ATTEMPTS = 3
    scripted(*(ProviderUnavailable("overloaded", status_code=529) for _ in range(3)))
    run = advance(submit("hello"))

    assert run.status == Run.Status.ESCALATED
    assert "model was unavailable" in run.outcome_reason
    attempts = run.spans.filter(kind="model").order_by("attempt")
    assert [(s.attempt, s.error_class) for s in attempts] == [
        (1, "transient"),
        (2, "transient"),
        (3, "transient"),
    ]


def test_a_rate_limited_model_is_retried_and_the_run_goes_on(scripted, submit):
    scripted(
        RateLimited("slow down", retry_after=0.001),
        [tool_use("send_reply", {"body": "Thanks, we are on it."}, "r1")],
        [text("done")],
    )
    run = advance(submit("hello"))

    assert run.status == Run.Status.RESOLVED
    first = run.spans.filter(kind="model").order_by("started_at").first()
    assert first.error_class == "transient" and first.attributes["retry_after"] == 0.001


def test_a_rejected_model_request_fails_the_run_without_retrying(scripted, submit):
    model = scripted(ProviderRejected("bad request", code="http_400"))
    run = advance(submit("hello"))

    assert run.status == Run.Status.FAILED
    assert "rejected" in run.outcome_reason
    assert model.responses == [] and run.spans.filter(kind="model").count() == 1


def test_a_refund_of_another_customers_order_is_refused(scripted, make_order, submit):
    order = make_order(email="someone-else@example.com")
    scripted(
        [
            tool_use(
                "issue_refund",
                {"order_id": order.order_id, "amount_cents": 100, "reason": "x"},
                "r1",
            )
        ],
        [text("stop")],
    )
    run = advance(submit("refund", email="ada@example.com"))

    assert "does not belong to the customer" in results(run)[0]["content"]
    assert not ProviderRefund.objects.exists()


def test_a_second_refund_proposal_with_another_amount_is_an_idempotency_mismatch(
    scripted, make_order, submit
):
    order = make_order(total_cents=4000)
    scripted(
        [
            tool_use(
                "issue_refund",
                {"order_id": order.order_id, "amount_cents": 1000, "reason": "x"},
                "r1",
            )
        ],
        [
            tool_use(
                "issue_refund",
                {"order_id": order.order_id, "amount_cents": 2000, "reason": "x"},
                "r2",
            )
        ],
        [text("stop")],
    )
    run = advance(submit(f"refund {order.order_id}"))

    second = results(run)[1]
    assert second["is_error"] and "idempotency_mismatch" in second["content"]
    assert ProviderRefund.objects.count() == 1


def test_a_worker_killed_after_the_provider_committed_is_resumed_without_paying_twice(
    make_order, submit, monkeypatch
):
    """The seed incident: the refund happened, the worker died before the ledger knew."""
    order = make_order(total_cents=2000)
    run = submit(f"refund {order.order_id}")
    real_refund = loop.TOOLS["issue_refund"].execute

    class WorkerKilled(BaseException):
        """Not an Exception: like SIGKILL, nothing in the loop may handle it."""

    def refund_then_die(resolved, ctx, key):
        real_refund(resolved, ctx, key)
        raise WorkerKilled

    monkeypatch.setitem(
        loop.TOOLS,
        "issue_refund",
        dataclasses.replace(loop.TOOLS["issue_refund"], execute=refund_then_die),
    )
    with pytest.raises(WorkerKilled):
        run_advance(run_id=run.pk, worker="doomed")
    monkeypatch.undo()

    run.refresh_from_db()
    assert run.status == Run.Status.RUNNING
    effect = Effect.objects.get(tool="issue_refund")
    assert effect.status == Effect.Status.STARTED
    # Visibly unfinished, not missing: the ledger row counts the attempt, and the trace
    # shows it open from the row (its span is written with an outcome).
    assert not Span.objects.filter(kind="tool", name="issue_refund").exists()
    [in_flight] = [
        s for s in run_spans_list(run=run) if (s.kind, s.name) == (Span.Kind.TOOL, "issue_refund")
    ]
    assert (in_flight.status, in_flight.ended_at, in_flight.attempt) == (
        Span.Status.STARTED,
        None,
        1,
    )
    assert in_flight.attributes["idempotency_key"] == effect.idempotency_key
    assert span_get(run=run, span_id=in_flight.span_id).started_at == effect.updated_at

    # Another worker takes over once the lease expires.
    assert run_advance(run_id=run.pk, worker="rescuer") == "not_claimed"
    Run.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    run = advance(run, worker="rescuer")

    assert run.status == Run.Status.RESOLVED, run.outcome_reason
    assert ProviderRefund.objects.filter(payment_ref=order.payment_ref).count() == 1
    effect.refresh_from_db()
    assert effect.status == Effect.Status.SUCCEEDED and effect.attempts == 1
    assert Span.objects.filter(attributes__ledger="recovered from provider").exists()
    assert order.refunds.count() == 1
    # The rescuer wrote the attempt the dead worker cut short.
    cut = Span.objects.get(kind="tool", name="issue_refund", status=Span.Status.ERROR)
    assert cut.error_message.startswith("interrupted:") and "rescuer" in cut.error_message
    assert cut.attributes["idempotency_key"] == effect.idempotency_key


def test_a_worker_killed_after_a_refund_s_outcome_answers_it_from_the_ledger(
    make_order, submit, monkeypatch
):
    """The refund's outcome is committed with its ledger row and span; the run's own
    record of the answer waits for its next write. A worker killed before then leaves
    the call answered in the ledger only: the next one answers it from there."""
    from agentops.integrations.llm.offline import OfflineModel

    order = make_order(total_cents=2000)
    run = submit(f"refund {order.order_id}")
    real_create = OfflineModel.create

    class WorkerKilled(BaseException):
        """Not an Exception: like SIGKILL, nothing in the loop may handle it."""

    def die_after_the_refund(self, **kwargs):
        last = kwargs["messages"][-1]
        if last["role"] == "user" and "refund_id" in str(last["content"]):
            raise WorkerKilled  # the model call that would read the refund's answer
        return real_create(self, **kwargs)

    monkeypatch.setattr(OfflineModel, "create", die_after_the_refund)
    with pytest.raises(WorkerKilled):
        run_advance(run_id=run.pk, worker="doomed")
    monkeypatch.undo()

    run.refresh_from_db()
    effect = Effect.objects.get(tool="issue_refund")
    assert effect.status == Effect.Status.SUCCEEDED
    done = Span.objects.get(kind="tool", name="issue_refund")
    assert (done.status, done.attributes["ledger"]) == (Span.Status.OK, "new")
    assert "refund_id" not in str(run.tool_results)  # with the run's next write

    Run.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    run = advance(run, worker="rescuer")

    assert run.status == Run.Status.RESOLVED, run.outcome_reason
    assert ProviderRefund.objects.filter(payment_ref=order.payment_ref).count() == 1
    effect.refresh_from_db()
    assert effect.attempts == 1
    again = Span.objects.get(
        kind="tool", name="issue_refund", attributes__replayed_from_ledger=True
    )
    assert again.status == Span.Status.OK
    # The model was given the refund's answer once, the ledger's.
    [answer] = [b for b in results(run) if "refund_id" in b["content"]]
    assert "Already done for this ticket" in answer["content"]


def test_a_worker_that_lost_its_lease_writes_nothing_more(make_order, submit):
    run = submit("hello")
    first = _claim(run_id=run.pk, worker="slow")
    Run.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert _claim(run_id=run.pk, worker="fast") is not None

    with pytest.raises(LeaseLost):
        Runner(first, "slow").begin()
    # The one span is the takeover that "fast" recorded; "slow" wrote nothing.
    [takeover] = Span.objects.all()
    assert (takeover.name, takeover.attributes["previous_worker"]) == ("interrupted", "slow")


def test_a_lease_lost_just_before_a_refund_stops_the_worker_before_the_ledger(
    make_order, submit, monkeypatch
):
    """The fence before a side effect (a row lock when the lease needs no renewal)
    finds the lease taken: no ledger row, no refund, no span from the old holder."""
    order = make_order(total_cents=2000)
    run = submit(f"My order {order.order_id} arrived broken. Please refund it.")
    evaluate = loop.policy_evaluate_call

    def evaluate_while_taken_over(*, tool, resolved, run):
        if tool == "issue_refund":  # another worker takes the run over meanwhile
            Run.objects.filter(pk=run.pk).update(lease_owner="rescuer")
        return evaluate(tool=tool, resolved=resolved, run=run)

    monkeypatch.setattr(loop, "policy_evaluate_call", evaluate_while_taken_over)

    assert run_advance(run_id=run.pk, worker="slow") == "lease_lost"
    assert not Effect.objects.exists() and not ProviderRefund.objects.exists()
    assert not Span.objects.filter(run=run, kind__in=["validate", "policy"], name="issue_refund")


def test_a_takeover_records_the_step_the_dead_worker_was_on(make_order, submit):
    run = submit("hello")
    assert _claim(run_id=run.pk, worker="first") is not None
    expired = timezone.now() - timedelta(seconds=1)
    Turn.objects.create(run=run, seq=0, message={"role": "user", "content": "hello"})
    Run.objects.filter(pk=run.pk).update(lease_expires_at=expired, model_calls=0)

    taken = _claim(run_id=run.pk, worker="second")

    assert taken is not None and taken.lease_owner == "second"
    [span] = Span.objects.filter(run=run)
    assert (span.kind, span.name, span.status, span.error_class, span.step) == (
        Span.Kind.POLICY,
        "interrupted",
        Span.Status.ERROR,
        Span.ErrorClass.TRANSIENT,
        1,  # the first model call: begin had saved the conversation, no step after it
    )
    assert span.attributes == {
        "previous_worker": "first",
        "lease_expired_at": expired.isoformat(),
        "resumed_by": "second",
    }
    assert span.error_message == (
        "worker first stopped at step 1 without recording an outcome; resumed by second"
    )
    assert span.parent_span_id == run.trace_id[:16]


def test_a_first_claim_and_a_parked_runs_claim_record_no_takeover(make_order, submit):
    run = submit("hello")
    assert _claim(run_id=run.pk, worker="first") is not None
    # Parked by an open breaker: nobody holds it, its lease ends at the retry time.
    Run.objects.filter(pk=run.pk).update(
        lease_owner="", lease_expires_at=timezone.now() - timedelta(seconds=1)
    )

    assert _claim(run_id=run.pk, worker="second") is not None
    assert not Span.objects.exists()


def test_the_sweeper_re_enqueues_runs_whose_task_was_lost(
    submit, settings, enqueued_runs, django_capture_on_commit_callbacks
):
    settings.RUN_STALE_SECONDS = 60
    fresh = submit("fresh")
    stale = submit("stale")
    expired = submit("expired")
    old = timezone.now() - timedelta(minutes=5)
    Run.objects.filter(pk=stale.pk).update(updated_at=old)
    Run.objects.filter(pk=expired.pk).update(
        status=Run.Status.RUNNING, lease_owner="dead", lease_expires_at=old
    )
    enqueued_runs.clear()

    with django_capture_on_commit_callbacks(execute=True):
        swept = runs_sweep_stale()

    assert sorted(swept) == sorted([stale.pk, expired.pk])
    assert fresh.pk not in enqueued_runs
