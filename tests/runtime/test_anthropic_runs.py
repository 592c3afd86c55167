"""Runs driven by the real anthropic SDK against a local Messages API server."""

import json
from decimal import Decimal

import pytest
from django.db.models import Sum

from agentops.models import Effect, Run
from approvals.models import PendingAction
from approvals.services import action_approve
from tests.fakes.messages_api import API_KEY, FakeMessagesAPI, Fault
from tests.runtime.helpers import advance
from traces.models import Span

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(settings):
    with FakeMessagesAPI() as server:
        settings.ANTHROPIC_API_KEY = API_KEY
        settings.ANTHROPIC_BASE_URL = server.url
        settings.ANTHROPIC_TIMEOUT_SECONDS = 0.3
        settings.TRIAGE_MODEL = "offline"
        yield server


def use(name, input, id):
    return {"type": "tool_use", "id": id, "name": name, "input": input}


def say(text):
    return {"type": "text", "text": text}


def tool_results(request):
    last = request["messages"][-1]
    return [b for b in last["content"] if isinstance(b, dict) and b.get("type") == "tool_result"]


def test_a_refund_run_goes_through_the_sdk_with_tool_ids_usage_and_cost(api, make_order, submit):
    order = make_order(total_cents=2500)
    usage = {
        "input_tokens": 1000,
        "output_tokens": 100,
        "cache_read_input_tokens": 2000,
        "cache_creation_input_tokens": 400,
    }
    api.push(
        {
            "content": [
                say("Looking."),
                use("lookup_order", {"order_id": order.order_id}, "toolu_A"),
            ],
            "usage": usage,
        },
        {
            "content": [
                use(
                    "issue_refund",
                    {"order_id": order.order_id, "amount_cents": 2500, "reason": "broken"},
                    "toolu_B",
                )
            ],
            "usage": usage,
        },
        {
            "content": [use("send_reply", {"body": "I've refunded $25.00."}, "toolu_C")],
            "usage": usage,
        },
        {"content": [say("Done.")], "usage": usage},
    )
    run = advance(submit(f"Please refund {order.order_id}, it arrived broken."))

    assert run.status == Run.Status.RESOLVED, run.outcome_reason
    assert run.model == "claude-sonnet-4-6"  # the seeded route for a clear, small refund
    # tool_use ids come back as tool_result ids, in the next request.
    assert [r["tool_use_id"] for r in tool_results(api.requests[1])] == ["toolu_A"]
    assert [r["tool_use_id"] for r in tool_results(api.requests[2])] == ["toolu_B"]
    assert json.loads(tool_results(api.requests[2])[0]["content"])["status"] == "succeeded"
    span = run.spans.filter(kind="model").first()
    assert (span.input_tokens, span.output_tokens) == (1000, 100)
    assert span.attributes["cache_read_input_tokens"] == 2000
    assert span.attributes["cache_creation_input_tokens"] == 400
    # Sonnet 4.5: $3 in, $15 out, $0.30 cache read, $3.75 cache write per MTok.
    assert span.cost == Decimal("0.003000") + Decimal("0.001500") + Decimal("0.000600") + Decimal(
        "0.001500"
    )
    assert Effect.objects.get(tool="issue_refund").status == Effect.Status.SUCCEEDED


def test_a_runs_cost_is_the_sum_of_its_model_and_triage_spans(api, make_order, submit, settings):
    settings.TRIAGE_MODEL = "claude-haiku-4-5"
    triage = use(
        "record_triage",
        {"intent": "question", "ambiguous": False, "amount_at_stake_cents": None, "reason": "q"},
        "toolu_T",
    )
    api.push(
        {"content": [triage], "usage": {"input_tokens": 500, "output_tokens": 40}},
        {
            "content": [use("send_reply", {"body": "It ships tomorrow."}, "r1")],
            "usage": {"input_tokens": 700, "output_tokens": 50, "cache_read_input_tokens": 300},
        },
        {"content": [say("Done.")], "usage": {"input_tokens": 800, "output_tokens": 10}},
    )
    run = advance(submit("When does my parcel ship?"))

    assert run.status == Run.Status.RESOLVED, run.outcome_reason
    spans = run.spans.filter(kind__in=[Span.Kind.MODEL, Span.Kind.TRIAGE])
    assert run.cost == spans.aggregate(total=Sum("cost"))["total"]
    assert run.spans.get(kind="triage").cost == Decimal("0.000700")  # haiku: 500*1 + 40*5
    assert run.cost > run.spans.get(kind="triage").cost
    assert run.spans.get(kind="run").cost == run.cost
    # Prompt-cache tokens are recorded where there were any, and only those.
    first, last = (s.attributes for s in run.spans.filter(kind="model").order_by("started_at"))
    assert first["cache_read_input_tokens"] == 300
    assert "cache_creation_input_tokens" not in first
    assert not {"cache_read_input_tokens", "cache_creation_input_tokens"} & last.keys()


def test_a_429_with_retry_after_and_a_529_are_retried_by_the_runtime(api, submit):
    api.push(
        Fault(429, "rate_limit_error", {"retry-after": "0.01"}),
        Fault(529, "overloaded_error"),
        {"content": [use("send_reply", {"body": "We are on it."}, "r1")]},
        {"content": [say("Done.")]},
    )
    run = advance(submit("hello"))

    assert run.status == Run.Status.RESOLVED, run.outcome_reason
    first = list(run.spans.filter(kind="model", step=1).order_by("attempt"))
    assert [(s.attempt, s.error_class) for s in first] == [
        (1, "transient"),
        (2, "transient"),
        (3, ""),
    ]
    assert first[0].attributes["retry_after"] == 0.01
    assert "529" in first[1].error_message


def test_a_400_fails_the_run_at_once_and_the_trace_says_terminal(api, submit):
    api.push(Fault(400, "invalid_request_error"))
    run = advance(submit("hello"))

    assert run.status == Run.Status.FAILED
    span = run.spans.get(kind="model")
    assert span.error_class == "terminal" and "400 invalid_request" in span.error_message
    assert len(api.requests) == 1


def test_a_tool_call_cut_off_by_max_tokens_is_handed_back_for_correction(api, submit):
    api.push(
        {"content": [use("send_reply", {}, "toolu_cut")], "stop_reason": "max_tokens"},
        {"content": [use("send_reply", {"body": "Short answer."}, "toolu_ok")]},
        {"content": [say("Done.")]},
    )
    run = advance(submit("hello"))

    assert run.status == Run.Status.RESOLVED, run.outcome_reason
    (result,) = tool_results(api.requests[1])
    assert result["tool_use_id"] == "toolu_cut" and result["is_error"] is True
    assert "cut off" in result["content"]
    assert run.spans.filter(kind="model", error_class="validation").count() == 1
    assert Effect.objects.filter(tool="send_reply").count() == 1


def test_an_empty_response_is_answered_with_a_request_to_go_on(api, submit):
    api.push(
        {"content": [], "stop_reason": "end_turn"},
        {"content": [use("send_reply", {"body": "Here you go."}, "r1")]},
        {"content": [say("Done.")]},
    )
    run = advance(submit("hello"))

    assert run.status == Run.Status.RESOLVED, run.outcome_reason
    follow_up = api.requests[1]["messages"][-1]
    assert follow_up["role"] == "user" and "empty" in follow_up["content"][0]["text"]


def test_a_tool_use_stop_without_a_tool_call_is_handed_back(api, submit):
    api.push(
        {"content": [say("Let me reply.")], "stop_reason": "tool_use"},
        {"content": [use("send_reply", {"body": "Here you go."}, "r1")]},
        {"content": [say("Done.")]},
    )
    run = advance(submit("hello"))

    assert run.status == Run.Status.RESOLVED, run.outcome_reason
    follow_up = api.requests[1]["messages"][-1]
    assert "held no tool call" in follow_up["content"][0]["text"]
    assert run.spans.get(kind="model", step=1).error_class == "validation"


def test_a_refusal_escalates_the_run(api, submit):
    api.push({"content": [say("I can't help with that.")], "stop_reason": "refusal"})
    run = advance(submit("hello"))

    assert run.status == Run.Status.ESCALATED
    assert "refused" in run.outcome_reason and "I can't help with that." in run.outcome_reason


def test_malformed_tool_calls_are_corrected_a_bounded_number_of_times(api, submit, settings):
    settings.RUN_MAX_CORRECTIONS = 2
    api.push(
        {"content": [use("no_such_tool", {}, "t1")]},
        {"content": [use("send_reply", "not an object", "t2")]},
        {"content": [use("send_reply", {"wrong": 1}, "t3")]},
        {"content": [use("send_reply", {"body": "never sent"}, "t4")]},
    )
    run = advance(submit("hello"))

    assert run.status == Run.Status.ESCALATED
    assert "Too many corrections" in run.outcome_reason
    assert len(api.requests) == 3  # the third correction is not asked for
    assert not Effect.objects.exists()


def test_corrections_made_before_an_approval_count_after_it(
    api, make_order, submit, support_lead, settings
):
    """The bound holds across tasks: a resumed run counts what earlier tasks corrected."""
    settings.RUN_MAX_CORRECTIONS = 2
    order = make_order(total_cents=12900)
    refund = {"order_id": order.order_id, "amount_cents": 12900, "reason": "broken"}
    api.push(
        {"content": [use("no_such_tool", {}, "t1")]},
        {"content": [use("send_reply", {"wrong": 1}, "t2")]},
        {"content": [use("issue_refund", refund, "t3")]},
    )
    run = advance(submit(f"My order {order.order_id} arrived broken."))
    assert run.status == Run.Status.AWAITING_APPROVAL, run.outcome_reason
    action_approve(action=PendingAction.objects.get(run=run), actor=support_lead)

    api.push({"content": [use("send_reply", "not an object", "t4")]})
    api.push({"content": [use("send_reply", {"body": "never asked for"}, "t5")]})
    run = advance(run)

    assert run.status == Run.Status.ESCALATED
    assert "Too many corrections" in run.outcome_reason
    assert run.spans.filter(error_class="validation").count() == 3
    assert len(api.requests) == 4  # the third correction, made after the approval, ends it
