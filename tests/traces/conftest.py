"""Row makers and the browser, shared with tests/web, and a failed run to look at."""

from datetime import timedelta

import pytest
from django.utils import timezone

from agentops.models import Run
from tests.web import conftest as web
from traces.models import Span

# The row makers and the browser of tests/web, shared rather than copied.
chromium = web.chromium
page = web.page
make_run = web.make_run
make_span = web.make_span
make_effect = web.make_effect
make_action = web.make_action
make_order = web.make_order
submit = web.submit


@pytest.fixture
def failed_run(make_run, make_span, make_effect):
    """A run whose refund failed twice with a transient error, then terminally."""
    run = make_run(Run.Status.FAILED, subject="Refund failed")
    t0 = timezone.now() - timedelta(minutes=4)
    root = make_span(
        run,
        span_id=run.trace_id[:16],
        kind=Span.Kind.RUN,
        name="run",
        started_at=t0,
        ended_at=t0 + timedelta(seconds=4),
        status=Span.Status.ERROR,
        error_class="terminal",
    )
    child = {"parent_span_id": root.span_id, "step": 1}
    model = make_span(
        run,
        **child,
        kind=Span.Kind.MODEL,
        name="messages.create",
        model="claude-sonnet-4-5",
        started_at=t0 + timedelta(milliseconds=100),
        ended_at=t0 + timedelta(milliseconds=900),
        input={"messages": [{"role": "user", "content": "Please refund ORD-10023"}]},
        output={
            "content": [
                {"type": "text", "text": "I will refund it."},
                {
                    "type": "tool_use",
                    "id": "toolu_01",
                    "name": "issue_refund",
                    "input": {"order_id": "10023", "amount_cents": 1999},
                },
            ],
            "stop_reason": "tool_use",
        },
        input_tokens=812,
        output_tokens=64,
        cost="0.003396",
    )
    validate = make_span(
        run,
        **child,
        kind=Span.Kind.VALIDATE,
        name="issue_refund",
        started_at=t0 + timedelta(milliseconds=950),
        ended_at=t0 + timedelta(milliseconds=960),
        input={"tool_use_id": "toolu_01", "input": {"order_id": "10023", "amount_cents": 1999}},
        output={"resolved": {"order_id": "ORD-10023", "amount_cents": 1999}, "notes": []},
    )
    attempts = []
    for n, (error_class, message) in enumerate(
        [
            ("transient", "GatewayTimeout: no answer after 10s"),
            ("terminal", "CardDeclined: the issuer refused the refund"),
        ],
        start=1,
    ):
        started = t0 + timedelta(seconds=n)
        attempts.append(
            make_span(
                run,
                **child,
                kind=Span.Kind.TOOL,
                name="issue_refund",
                attempt=n,
                started_at=started,
                ended_at=started + timedelta(milliseconds=700),
                status=Span.Status.ERROR,
                error_class=error_class,
                error_message=message,
                input={"order_id": "ORD-10023", "amount_cents": 1999},
                output={"error": {"code": "card_declined", "decline_code": "do_not_honor"}}
                if n == 2
                else None,
                attributes={"idempotency_key": f"refund:{run.ticket.code}:ORD-10023"},
            )
        )
    make_effect(
        run,
        status="failed",
        result=None,
        error={"code": "card_declined", "message": "the issuer refused the refund"},
    )
    return {"run": run, "root": root, "model": model, "validate": validate, "attempts": attempts}
