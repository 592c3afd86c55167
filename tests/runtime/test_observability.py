"""Observability outside the app: OTLP export with GenAI attributes, redaction, JSON logs."""

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from agentops.models import Run
from agentops.runtime.loop import run_advance
from traces import otel
from traces.logs import JsonFormatter, run_log_context
from traces.models import Span
from traces.services import span_build

pytestmark = pytest.mark.django_db


class Collector:
    """A tiny OTLP/HTTP endpoint on the loopback: it keeps what it is sent."""

    def __init__(self, status: int = 200):
        self.requests: list[ExportTraceServiceRequest] = []
        self.paths: list[str] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                collector.paths.append(self.path)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                collector.requests.append(request)
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def spans(self) -> list:
        return [
            span
            for request in self.requests
            for resource_spans in request.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _value(any_value):
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    return getattr(any_value, kind)


def attributes(span) -> dict:
    return {kv.key: _value(kv.value) for kv in span.attributes}


@pytest.fixture
def collector(settings):
    receiver = Collector()
    settings.OTEL_EXPORTER_OTLP_ENDPOINT = receiver.url
    otel.otel_reset()
    yield receiver
    otel.otel_reset()
    receiver.close()


def test_a_finished_run_is_exported_over_otlp_with_genai_attributes(
    collector, make_order, submit, django_capture_on_commit_callbacks
):
    order = make_order(total_cents=2500)
    run = submit(f"Please refund my order {order.order_id}, it arrived broken.")
    with django_capture_on_commit_callbacks(execute=True):
        assert run_advance(run_id=run.pk, worker="test-worker") == Run.Status.RESOLVED
    assert otel.otel_flush()

    run.refresh_from_db()
    assert collector.paths and set(collector.paths) == {"/v1/traces"}
    exported = collector.spans()
    stored = list(run.spans.all())
    assert len(exported) == len(stored)
    assert {s.trace_id.hex() for s in exported} == {run.trace_id}
    resource = collector.requests[0].resource_spans[0].resource
    assert {kv.key: _value(kv.value) for kv in resource.attributes}["service.name"] == "agentops"

    by_name = {}
    for span in exported:
        by_name.setdefault(span.name, []).append(attributes(span))
    root = by_name["invoke_agent agentops-refund-agent"][0]
    assert root["gen_ai.operation.name"] == "invoke_agent"
    assert root["agentops.run.code"] == str(run.code)

    chat = next(
        a
        for name, v in by_name.items()
        if name.startswith("chat ")
        for a in v
        if a["agentops.span.kind"] == "model"
    )
    assert chat["gen_ai.operation.name"] == "chat"
    assert chat["gen_ai.request.model"] == run.model
    assert chat["gen_ai.usage.input_tokens"] > 0
    assert chat["gen_ai.usage.output_tokens"] > 0
    assert chat["gen_ai.response.finish_reasons"] == ["tool_use"]

    refund = by_name["execute_tool issue_refund"][0]
    assert refund["gen_ai.operation.name"] == "execute_tool"
    assert refund["gen_ai.tool.name"] == "issue_refund"
    tool_use_ids = [
        b["id"]
        for m in run.messages
        if m["role"] == "assistant"
        for b in m["content"]
        if b.get("type") == "tool_use" and b["name"] == "issue_refund"
    ]
    assert refund["gen_ai.tool.call.id"] == tool_use_ids[0]
    assert "error.type" not in refund
    # Parent links survive: every span but the root hangs under the root.
    root_span = next(s for s in exported if s.name.startswith("invoke_agent"))
    assert root_span.parent_span_id == b""
    assert all(s.parent_span_id == root_span.span_id for s in exported if s is not root_span)


def test_a_failed_attempt_carries_error_type(collector, make_run_with_error):
    run = make_run_with_error
    assert otel.trace_export(run_id=run.pk) == 2
    assert otel.otel_flush()
    failed = next(s for s in collector.spans() if s.name == "execute_tool issue_refund")
    attrs = attributes(failed)
    assert attrs["error.type"] == "transient"
    assert attrs["agentops.error.code"] == "timeout"
    assert failed.status.code == 2  # STATUS_CODE_ERROR
    assert "GatewayTimeout" in failed.status.message


@pytest.fixture
def make_run_with_error(submit):
    run = submit("Refund please")
    Run.objects.filter(pk=run.pk).update(trace_id="ab" * 16)
    run.refresh_from_db()
    root = span_build(run=run, kind=Span.Kind.RUN, name="run", step=0)
    root.span_id = run.trace_id[:16]
    root.save()
    tool = span_build(
        run=run,
        kind=Span.Kind.TOOL,
        name="issue_refund",
        step=1,
        parent_span_id=root.span_id,
        attributes={"code": "timeout"},
    )
    tool.status, tool.error_class = Span.Status.ERROR, "transient"
    tool.error_message = "GatewayTimeout: no answer after 10s"
    tool.ended_at = tool.started_at
    tool.save()
    return run


def test_an_unreachable_collector_never_affects_a_run(
    settings, make_order, submit, django_capture_on_commit_callbacks, caplog
):
    closed = Collector()
    closed.close()  # nothing listens on this port any more
    settings.OTEL_EXPORTER_OTLP_ENDPOINT = closed.url
    otel.otel_reset()
    try:
        order = make_order(total_cents=2500)
        run = submit(f"Please refund my order {order.order_id}, it arrived broken.")
        with django_capture_on_commit_callbacks(execute=True):
            status = run_advance(run_id=run.pk, worker="test-worker")
        assert status == Run.Status.RESOLVED
        otel.otel_flush(timeout_millis=8000)
    finally:
        otel.otel_reset()
    run.refresh_from_db()
    assert run.status == Run.Status.RESOLVED


def test_nothing_is_exported_without_an_endpoint(settings, submit):
    settings.OTEL_EXPORTER_OTLP_ENDPOINT = ""
    otel.otel_reset()
    run = submit("Refund please")
    assert otel.trace_export(run_id=run.pk) == 0


# --- redaction --------------------------------------------------------------------------


def test_it_redacts_configured_patterns_before_a_span_is_stored(settings, submit):
    settings.TRACE_REDACT_PATTERNS = [r"EMP-\d{6}", r"(?i)passport:\s*\w+"]
    run = submit("Refund please")
    span = span_build(
        run=run,
        kind=Span.Kind.TOOL,
        name="lookup_order",
        step=1,
        input={"note": "staff EMP-123456, Passport: X1234567, order ORD-10023"},
    )
    span.save()
    span.refresh_from_db()
    assert span.input == {"note": "staff [REDACTED], [REDACTED], order ORD-10023"}


def test_it_refuses_to_start_with_a_pattern_that_does_not_compile(tmp_path):
    from tests.test_settings import manage

    result = manage("check", env={"TRACE_REDACT_PATTERNS": "ok-\\d+;;(unclosed"}, tmp_path=tmp_path)
    assert result.returncode != 0
    assert "TRACE_REDACT_PATTERNS has an invalid pattern '(unclosed'" in result.stderr


# --- JSON logs ----------------------------------------------------------------------------


def test_json_logs_carry_the_trace_and_run_of_the_run_being_worked_on(submit):
    run = submit("Refund please")
    Run.objects.filter(pk=run.pk).update(trace_id="cd" * 16)
    run.refresh_from_db()
    formatter = JsonFormatter()
    logger = logging.getLogger("agentops.test")

    def line(message, **extra):
        record = logger.makeRecord(
            logger.name, logging.INFO, __file__, 1, message, (), None, extra=extra
        )
        return json.loads(formatter.format(record))

    with run_log_context(run=run):
        inside = line("calling the model %s", attempt=2)
    outside = line("idle")
    assert inside["trace_id"] == "cd" * 16
    assert inside["run"] == str(run.code)
    assert inside["attempt"] == 2
    assert inside["level"] == "INFO" and inside["logger"] == "agentops.test"
    assert "trace_id" not in outside and "run" not in outside


def test_the_runtime_logs_inside_the_run_context(submit, monkeypatch, caplog):
    run = submit("Refund please")
    seen = {}

    from agentops.runtime import loop
    from traces.logs import current_run_context

    def go(self):
        seen.update(current_run_context())
        return "lease_lost"

    monkeypatch.setattr(loop.Runner, "go", go)
    run_advance(run_id=run.pk, worker="test-worker")
    run.refresh_from_db()
    assert seen == {"trace_id": run.trace_id, "run": str(run.code)}
    assert current_run_context() == {}
