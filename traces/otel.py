"""Spans as OpenTelemetry sees them, and their optional export over OTLP/HTTP.

Attributes follow the OpenTelemetry GenAI semantic conventions (gen_ai.*, error.type),
mapped from the stored Span fields at export time, so the runtime keeps writing
plain rows. Export is off unless OTEL_EXPORTER_OTLP_ENDPOINT is set; when on, a
finished run's spans go to a BatchSpanProcessor after the run's last commit: a
background thread sends them in batches, and a failure is logged, never raised,
so an unreachable collector can't fail or slow down a run.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from django.conf import settings
from django.db import transaction

from traces.models import Span

logger = logging.getLogger(__name__)

AGENT_NAME = "agentops-refund-agent"

# gen_ai.operation.name by span kind (the others are agentops' own steps).
OPERATIONS = {
    Span.Kind.RUN: "invoke_agent",
    Span.Kind.TRIAGE: "chat",
    Span.Kind.MODEL: "chat",
    Span.Kind.TOOL: "execute_tool",
}
TOOL_KINDS = {Span.Kind.VALIDATE, Span.Kind.POLICY, Span.Kind.APPROVAL, Span.Kind.TOOL}


def _provider(model: str) -> str:
    if model.startswith("claude"):
        return "anthropic"
    return model or "unknown"


def _tool_call_ids(spans: list[Span]) -> dict[tuple[int, str], str]:
    """(step, tool name) → the model's tool_use id, read from the validate spans."""
    found: dict[tuple[int, str], str] = {}
    for span in spans:
        if span.kind == Span.Kind.VALIDATE and isinstance(span.input, dict):
            tool_use_id = span.input.get("tool_use_id")
            if tool_use_id:
                found.setdefault((span.step, span.name), str(tool_use_id))
    return found


def span_otel_name(span: Span) -> str:
    """ "{operation} {target}" as the conventions name spans: "chat claude-sonnet-4-5"."""
    operation = OPERATIONS.get(span.kind)
    if operation == "invoke_agent":
        return f"invoke_agent {AGENT_NAME}"
    if operation == "chat":
        return f"chat {span.model}" if span.model else "chat"
    if operation == "execute_tool":
        return f"execute_tool {span.name}"
    return f"{span.kind} {span.name}"


def span_otel_attributes(span: Span, *, tool_call_id: str = "") -> dict[str, Any]:
    """The span's OpenTelemetry attributes: GenAI conventions first, agentops.* for the rest."""
    attrs: dict[str, Any] = {}
    operation = OPERATIONS.get(span.kind)
    if operation:
        attrs["gen_ai.operation.name"] = operation
    if span.kind == Span.Kind.RUN:
        attrs["gen_ai.agent.name"] = AGENT_NAME
    if span.model:
        attrs["gen_ai.request.model"] = span.model
        attrs["gen_ai.provider.name"] = _provider(span.model)
    if span.input_tokens or span.output_tokens or span.kind == Span.Kind.MODEL:
        attrs["gen_ai.usage.input_tokens"] = span.input_tokens
        attrs["gen_ai.usage.output_tokens"] = span.output_tokens
    extra = span.attributes if isinstance(span.attributes, dict) else {}
    # A model span's output holds its stop reason (older spans: their attributes).
    output = span.output if isinstance(span.output, dict) else {}
    stop_reason = output.get("stop_reason") or extra.get("stop_reason")
    if stop_reason:
        attrs["gen_ai.response.finish_reasons"] = [str(stop_reason)]
    if extra.get("response_id"):
        attrs["gen_ai.response.id"] = str(extra["response_id"])
    if span.kind in TOOL_KINDS:
        attrs["gen_ai.tool.name"] = span.name
        attrs["gen_ai.tool.type"] = "function"
        if tool_call_id:
            attrs["gen_ai.tool.call.id"] = tool_call_id
    if span.error_class:
        attrs["error.type"] = span.error_class
    if extra.get("code"):
        attrs["agentops.error.code"] = str(extra["code"])
    attrs.update(
        {
            "agentops.span.kind": span.kind,
            "agentops.step": span.step,
            "agentops.attempt": span.attempt,
            "agentops.cost_usd": float(span.cost),
            "agentops.run.code": str(span.run.code) if span.run_id else "",
        }
    )
    if extra.get("idempotency_key"):
        attrs["agentops.idempotency_key"] = str(extra["idempotency_key"])
    return attrs


def run_otel_attributes(spans: list[Span]) -> dict[str, dict[str, Any]]:
    """span_id → attributes for a run's spans (tool call ids need the whole run)."""
    calls = _tool_call_ids(spans)
    return {
        s.span_id: span_otel_attributes(s, tool_call_id=calls.get((s.step, s.name), ""))
        for s in spans
    }


# --- export ----------------------------------------------------------------------------

_lock = threading.Lock()
_processor = None


def _get_processor():
    """The process's BatchSpanProcessor, made on first use; None when export is off."""
    global _processor
    endpoint = settings.OTEL_EXPORTER_OTLP_ENDPOINT
    if not endpoint:
        return None
    with _lock:
        if _processor is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            exporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces", timeout=5)
            _processor = BatchSpanProcessor(exporter, schedule_delay_millis=1000)
        return _processor


def otel_flush(timeout_millis: int = 5000) -> bool:
    """Send what is queued now (tests, and shutdown)."""
    processor = _processor
    return processor.force_flush(timeout_millis) if processor is not None else True


def otel_reset() -> None:
    """Forget the processor (after a settings change in tests); queued spans are sent first."""
    global _processor
    with _lock:
        if _processor is not None:
            _processor.shutdown()
        _processor = None


def _readable(span: Span, attributes: dict[str, Any], resource):
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

    trace_id = int(span.trace_id, 16)

    def context(span_id: str) -> SpanContext:
        return SpanContext(
            trace_id=trace_id,
            span_id=int(span_id, 16),
            is_remote=False,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )

    if span.status == Span.Status.ERROR:
        status = Status(StatusCode.ERROR, span.error_message[:500] or span.error_class)
    elif span.status == Span.Status.OK:
        status = Status(StatusCode.OK)
    else:
        status = Status(StatusCode.UNSET)
    kind = (
        SpanKind.CLIENT if span.kind in (Span.Kind.MODEL, Span.Kind.TRIAGE) else SpanKind.INTERNAL
    )
    ended = span.ended_at or span.started_at
    return ReadableSpan(
        name=span_otel_name(span),
        context=context(span.span_id),
        parent=context(span.parent_span_id) if span.parent_span_id else None,
        resource=resource,
        attributes=attributes,
        kind=kind,
        status=status,
        start_time=int(span.started_at.timestamp() * 1e9),
        end_time=int(ended.timestamp() * 1e9),
    )


def trace_export(*, run_id: int) -> int:
    """Queue a run's spans for OTLP export. Returns how many; never raises."""
    processor = _get_processor()
    if processor is None:
        return 0
    try:
        from opentelemetry.sdk.resources import Resource

        spans = list(Span.objects.filter(run_id=run_id).select_related("run").order_by("id"))
        spans = [s for s in spans if s.run.trace_id]
        resource = Resource.create({"service.name": settings.OTEL_SERVICE_NAME})
        attributes = run_otel_attributes(spans)
        for span in spans:
            processor.on_end(_readable(span, attributes[span.span_id], resource))
        return len(spans)
    except Exception:
        logger.exception("trace export of run %s failed; the run is not affected", run_id)
        return 0


def trace_export_on_commit(*, run_id: int) -> None:
    """Export once the surrounding transaction (if any) has committed."""
    if not settings.OTEL_EXPORTER_OTLP_ENDPOINT:
        return
    transaction.on_commit(lambda: trace_export(run_id=run_id))
