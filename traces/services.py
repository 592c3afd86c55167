"""Writes of spans. The runtime saves them in the transaction of the change they describe."""

from __future__ import annotations

import secrets
from decimal import Decimal

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
