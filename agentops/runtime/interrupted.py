"""Steps a dead worker left unfinished, recorded when another worker takes the run over.

A side effect's call (a provider's refund, a reply) is counted in its ledger row
before it is made, and its span is written with its outcome; a retry's span is
saved started, before the call. So a worker that dies mid-call leaves the row
started with no span of that attempt, or a retry's span started and never ended
(the trace page shows either open meanwhile). The worker that claims the run next
knows the previous holder is gone (its lease expired, or the run was queued
again), so it writes the first as interrupted and marks the second so: the trace
shows the attempt that was cut short, and the resumed attempt after it, instead
of a step that looks as if it were still running.

A model call has no side effect, so its span is written once, with the step it
belongs to (one write fewer per step): a worker killed around a model call
leaves no span of that call behind. What the trace must still show is that a
step was cut short, so a takeover (the run found running under another worker's
expired lease) writes one "interrupted" span naming the dead worker and the
step it was on. It costs nothing unless a worker died.
"""

from __future__ import annotations

from traces.models import Span
from traces.selectors import ledger_calls_unrecorded
from traces.services import ledger_call_span, new_span_id, root_span_id, span_build, span_finish

INTERRUPTED = "interrupted"


def spans_mark_interrupted(*, run, worker: str) -> int:
    """Mark the run's unfinished step spans (not its root) as interrupted, and write
    those of the side-effect calls the ledger holds started with no span (a first
    attempt's span is written with its outcome); returns how many."""
    interrupted = {
        "status": Span.Status.ERROR,
        "error_class": Span.ErrorClass.TRANSIENT,
        "error_message": (
            f"{INTERRUPTED}: the worker running this step stopped before it finished "
            f"(killed, or its lease expired); {worker} resumed the run"
        ),
    }
    marked = (
        Span.objects.filter(run=run, status=Span.Status.STARTED, ended_at__isnull=True)
        .exclude(span_id=root_span_id(run))
        .update(**interrupted)
    )
    step = step_in_progress(run)
    cut = []
    for effect in ledger_calls_unrecorded(run=run):
        span = ledger_call_span(run=run, effect=effect, step=step)
        span.span_id = new_span_id()
        for name, value in interrupted.items():
            setattr(span, name, value)
        cut.append(span)
    Span.objects.bulk_create(cut)
    return marked + len(cut)


def run_take_over(*, run, previous_worker: str, lease_expired_at, worker: str) -> Span | None:
    """Record that `worker` took the run over from `previous_worker`, whose lease expired.

    Call in the claim's transaction, with `run` as claimed (its saved state is what
    the previous worker had committed). A run nobody held (parked, released) is no
    takeover: nothing is written and None is returned.
    """
    if not previous_worker or previous_worker == worker:
        return None
    step = step_in_progress(run)
    span = span_build(
        run=run,
        kind=Span.Kind.POLICY,
        name=INTERRUPTED,
        step=step,
        parent_span_id=root_span_id(run),
        attributes={
            "previous_worker": previous_worker,
            "lease_expired_at": lease_expired_at.isoformat() if lease_expired_at else None,
            "resumed_by": worker,
        },
    )
    span_finish(
        span,
        output={"step": step, "model_calls": run.model_calls},
        error_class=Span.ErrorClass.TRANSIENT,
        error_message=(
            f"worker {previous_worker} stopped at step {step} without recording an outcome; "
            f"resumed by {worker}"
        ),
    )
    span.save()
    return span


def step_in_progress(run) -> int:
    """The step a worker was on given the run's saved state (as Runner.step reads it)."""
    messages = run.messages
    if not messages:
        return 0  # triage
    last = messages[-1]
    if last.get("role") == "assistant":
        answered = {r.get("tool_use_id") for r in run.tool_results}
        uses = [b for b in last.get("content", []) if b.get("type") == "tool_use"]
        if not uses or any(u.get("id") not in answered for u in uses):
            return run.model_calls  # that step's tools, or its finish
    return run.model_calls + 1  # the next model call
