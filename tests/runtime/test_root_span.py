"""A run's root span is written once, finished, when the run ends; the trace shows it
open, read from the run, until then (traces.services.root_span_build)."""

import pytest

from agentops.models import Run
from approvals.models import PendingAction
from approvals.services import action_approve
from tests.runtime.helpers import advance
from traces.models import Span
from traces.selectors import run_spans_list, span_get
from traces.services import root_span_id

pytestmark = pytest.mark.django_db


def test_a_parked_run_shows_its_root_open_and_its_end_writes_it_once(
    make_order, submit, support_lead
):
    order = make_order(total_cents=12900)
    run = advance(submit(f"I want a refund for {order.order_id}."))
    assert run.status == Run.Status.AWAITING_APPROVAL

    assert not run.spans.filter(kind=Span.Kind.RUN).exists()
    spans = run_spans_list(run=run)
    root = spans[0]
    assert (root.kind, root.span_id, root.pk) == (Span.Kind.RUN, root_span_id(run), None)
    assert (root.status, root.ended_at, root.started_at) == (
        Span.Status.STARTED,
        None,
        run.started_at,
    )
    assert root.input == {"ticket": str(run.ticket.code), "subject": run.ticket.subject}
    assert {s.parent_span_id for s in spans[1:]} == {root.span_id}
    assert span_get(run=run, span_id=root.span_id).status == Span.Status.STARTED

    action_approve(action=PendingAction.objects.get(run=run), actor=support_lead)
    run = advance(run)

    assert run.status == Run.Status.RESOLVED, run.outcome_reason
    [root] = run.spans.filter(kind=Span.Kind.RUN)
    assert (root.span_id, root.status, root.output) == (
        root_span_id(run),
        Span.Status.OK,
        {"status": Run.Status.RESOLVED},
    )
    assert (root.started_at, root.ended_at) == (run.started_at, run.finished_at)
    assert (root.cost, root.input_tokens) == (run.cost, run.input_tokens)
    assert [s.pk for s in run_spans_list(run=run) if s.kind == Span.Kind.RUN] == [root.pk]


def test_a_queued_run_has_no_root_and_a_span_id_of_another_run_is_not_found(submit):
    queued = submit("Where is my parcel?")

    assert run_spans_list(run=queued) == []
    with pytest.raises(Span.DoesNotExist):
        span_get(run=queued, span_id=root_span_id(queued))


def test_a_run_ended_before_it_began_has_its_root(submit, settings):
    """Outside the autonomy share, a run goes to a person before any model call: its
    root says so (it had none when the root was written as the run began)."""
    settings.AUTONOMY_SHARE_PERCENT = 0
    run = advance(submit("Refund ORD-1 please"))

    assert run.status == Run.Status.ESCALATED
    [root] = run.spans.filter(kind=Span.Kind.RUN)
    assert root.status == Span.Status.ERROR and root.error_message == run.outcome_reason
