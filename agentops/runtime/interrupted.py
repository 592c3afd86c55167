"""Steps a dead worker left unfinished, marked when another worker takes the run over.

A span is saved before every outside call (model, provider), so a worker that
dies mid-call leaves it started and never ended. The worker that claims the run
next knows the previous holder is gone (its lease expired, or the run was queued
again), so it marks those spans as interrupted: the trace shows the attempt that
was cut short, and the resumed attempt after it, instead of a step that looks
as if it were still running.
"""

from __future__ import annotations

from traces.models import Span

INTERRUPTED = "interrupted"


def spans_mark_interrupted(*, run, worker: str) -> int:
    """Mark the run's unfinished step spans (not its root) as interrupted; returns how many."""
    return (
        Span.objects.filter(run=run, status=Span.Status.STARTED, ended_at__isnull=True)
        .exclude(span_id=run.trace_id[:16])
        .update(
            status=Span.Status.ERROR,
            error_class=Span.ErrorClass.TRANSIENT,
            error_message=(
                f"{INTERRUPTED}: the worker running this step stopped before it finished "
                f"(killed, or its lease expired); {worker} resumed the run"
            ),
        )
    )
