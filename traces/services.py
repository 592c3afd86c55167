"""Writes of spans. The runtime saves them in the transaction of the change they describe."""

from __future__ import annotations

import secrets
from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from traces.models import Span
from traces.redact import redact, redact_text


def new_span_id() -> str:
    return secrets.token_hex(8)


def span_build(
    *,
    run,
    kind: str,
    name: str,
    step: int,
    attempt: int = 1,
    model: str = "",
    input=None,
    attributes: dict | None = None,
    parent_span_id: str = "",
) -> Span:
    """A started span, not yet saved."""
    return Span(
        run=run,
        trace_id=run.trace_id,
        span_id=new_span_id(),
        parent_span_id=parent_span_id,
        kind=kind,
        name=name,
        step=step,
        attempt=attempt,
        model=model,
        input=redact(input),
        attributes=redact(attributes or {}),
        started_at=timezone.now(),
    )


def span_finish(
    span: Span,
    *,
    output=None,
    error_class: str = "",
    error_message: str = "",
    input_tokens: int = 0,
    output_tokens: int = 0,
    cost: Decimal | int = 0,
    attributes: dict | None = None,
) -> Span:
    """Mark a span ended (ok, or error when error_class is given). Does not save."""
    span.ended_at = timezone.now()
    span.status = Span.Status.ERROR if error_class else Span.Status.OK
    span.output = redact(output)
    span.error_class = error_class
    span.error_message = redact_text(error_message)
    span.input_tokens = input_tokens
    span.output_tokens = output_tokens
    span.cost = cost
    if attributes:
        span.attributes = {**span.attributes, **redact(attributes)}
    return span


# --- retention ------------------------------------------------------------------------


def _final_runs_before(before: datetime):
    from agentops.models import Run

    return Run.objects.filter(created_at__lt=before, status__in=Run.FINAL_STATUSES)


def spans_prune(*, before: datetime, batch: int = 5000, dry_run: bool = False) -> int:
    """Delete the spans of finished runs created before `before`, `batch` rows a transaction.

    Short transactions: each deletes one batch by primary key and commits, so no
    lock is held long and the runtime's writes go on. Unfinished runs keep theirs.
    Returns how many spans were (or, with dry_run, would be) deleted.
    """
    spans = Span.objects.filter(run__in=_final_runs_before(before))
    if dry_run:
        return spans.count()
    deleted = 0
    while True:
        with transaction.atomic():
            ids = list(spans.order_by().values_list("pk", flat=True)[:batch])
            if not ids:
                return deleted
            count, _ = Span.objects.filter(pk__in=ids).delete()
        deleted += count


def span_payloads_drop(*, before: datetime, batch: int = 5000, dry_run: bool = False) -> int:
    """Drop input and output of the spans of resolved runs created before `before`.

    Status, error class, attempt, model, tokens, cost and timings stay, so the
    dashboard's figures and the waterfall survive. Returns how many spans changed.
    """
    from agentops.models import Run

    runs = Run.objects.filter(created_at__lt=before, status=Run.Status.RESOLVED)
    spans = Span.objects.filter(run__in=runs).filter(
        Q(input__isnull=False) | Q(output__isnull=False)
    )
    if dry_run:
        return spans.count()
    changed = 0
    while True:
        with transaction.atomic():
            ids = list(spans.order_by().values_list("pk", flat=True)[:batch])
            if not ids:
                return changed
            changed += Span.objects.filter(pk__in=ids).update(input=None, output=None)
