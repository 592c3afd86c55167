"""A model span says which turns of the run it sent and answered; the trace reads them.

The messages a call sent and the model's answer are written once, as the run's turns;
the span that records the call points at them (traces.payloads), and every reader of
the trace sees them redacted, as when the span held a redacted copy.
"""

import json
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from agentops.integrations.errors import ProviderUnavailable
from agentops.models import Effect, Run
from agentops.runtime.loop import run_advance
from tests.runtime.conftest import text, tool_use
from traces.display import span_as_dict, span_part
from traces.models import Span
from traces.payloads import (
    AS_SENT,
    NO_LEDGER_ROW,
    NO_TOOL_RESULT,
    NO_TURNS,
    NO_VALIDATION,
    resolved_ref,
    span_input,
    span_output,
    span_unreadable,
    tool_result_ref,
)

pytestmark = pytest.mark.django_db

SECRET = "sk-ant-api03-abcdefghijklmnop"


def _resolved(run: Run) -> Run:
    """The standard ticket's run advanced to its end, read back."""
    assert run_advance(run_id=run.pk, worker="w") == Run.Status.RESOLVED
    return Run.objects.get(pk=run.pk)


def _model_spans(run: Run) -> list[Span]:
    spans = list(run.spans.filter(kind=Span.Kind.MODEL, name="messages.create").order_by("id"))
    for span in spans:
        span.run = run
    return spans


def test_a_model_span_stores_where_its_turns_are_not_the_turns(refund_ticket):
    run = _resolved(refund_ticket())

    spans = _model_spans(run)
    assert len(spans) == 4
    assistants = [i for i, m in enumerate(run.messages) if m["role"] == "assistant"]
    first = 0
    for span, answer in zip(spans, assistants, strict=True):
        assert span.input == {"turns": [first, answer - 1]}
        stop_reason = "tool_use" if span is not spans[-1] else "end_turn"
        assert span.output == {"turn": answer, "stop_reason": stop_reason}
        assert "stop_reason" not in span.attributes  # one copy, in the output
        first = answer + 1


def test_the_trace_reads_a_model_span_s_turns_redacted(submit, scripted):
    scripted([text("Thanks, I will look into it.")])
    run = submit(f"My key {SECRET} was charged twice. Please refund.")
    run_advance(run_id=run.pk, worker="w")
    run = Run.objects.get(pk=run.pk)
    # The conversation holds what the customer wrote, for the model.
    assert SECRET in run.messages[0]["content"]

    (span,) = _model_spans(run)
    assert SECRET not in str(span.input) + str(span.output)  # a reference, no copy
    sent = span_input(span)["messages"]
    assert len(sent) == 1 and "[REDACTED secret]" in sent[0]["content"]
    assert span_output(span) == {
        "content": [text("Thanks, I will look into it.")],
        "stop_reason": "end_turn",
    }
    shown = span_as_dict(span)
    assert shown["input"] == {"messages": sent} and SECRET not in str(shown)
    part = span_part(span, "input")
    assert part.shape == "messages" and "[REDACTED secret]" in part.text
    assert SECRET not in part.text


def test_a_failed_call_s_span_keeps_a_copy_of_what_it_sent(submit, scripted):
    scripted(ProviderUnavailable("503", status_code=503), [text("Done.")])
    run = submit("Where is my parcel?")
    run_advance(run_id=run.pk, worker="w")
    run = Run.objects.get(pk=run.pk)

    failed, answered = _model_spans(run)
    assert failed.error_class and failed.input == {"messages": [run.messages[0]]}
    assert answered.input == {"turns": [0, 0]}
    assert span_input(failed) == span_input(answered)


def test_turns_the_run_no_longer_holds_are_said_to_be_unavailable(submit):
    run = submit("Where is my parcel?")
    span = Span(run=run, kind=Span.Kind.MODEL, input={"turns": [0, 4]})
    span.output = {"turn": 5, "stop_reason": "end_turn"}

    assert span_input(span)["unavailable"] == NO_TURNS
    assert span_output(span)["unavailable"] == NO_TURNS
    # Other spans' payloads, and a model span's copy, are read as stored.
    copy = Span(run=run, kind=Span.Kind.MODEL, input={"messages": []}, output={"turn": 0})
    assert span_input(copy) == {"messages": []} and span_output(copy) == {"turn": 0}
    tool = Span(run=run, kind=Span.Kind.TOOL, input={"turns": [0, 0]})
    assert span_input(tool) == {"turns": [0, 0]}


def test_the_triage_span_reads_the_ticket_and_the_run_s_triage(submit, scripted):
    scripted([text("Thanks, I will look into it.")])
    run = submit(f"My key {SECRET} was charged twice. Please refund.", subject="Charged twice")
    run_advance(run_id=run.pk, worker="w")
    run = Run.objects.select_related("ticket").get(pk=run.pk)

    span = run.spans.get(kind=Span.Kind.TRIAGE)
    span.run = run
    assert span.input == {"ticket": ["subject", "body"]} and span.output == {"run": "triage"}
    shown = span_as_dict(span)
    assert shown["input"] == {
        "subject": "Charged twice",
        "body": "My key [REDACTED secret] was charged twice. Please refund.",
    }
    assert shown["output"] == run.triage and run.triage["intent"]


def test_a_validation_span_reads_the_arguments_from_the_model_s_turn(submit, scripted):
    sent = {"order_id": "ORD-404", "note": f"key {SECRET}"}
    scripted([tool_use("lookup_order", sent, id="toolu_lookup_1")], [text("No such order.")])
    run = submit("Where is my parcel?")
    run_advance(run_id=run.pk, worker="w")
    run = Run.objects.get(pk=run.pk)

    span = run.spans.get(kind=Span.Kind.VALIDATE)
    span.run = run
    assert span.error_class  # refused, and written all the same with what was sent
    assert span.input == {"tool_use_id": "toolu_lookup_1"}
    assert span_input(span) == {
        "tool_use_id": "toolu_lookup_1",
        "input": {"order_id": "ORD-404", "note": "key [REDACTED secret]"},
    }
    assert SECRET not in span_part(span, "input").text


def test_a_side_effect_s_tool_span_reads_its_request_and_result_from_the_ledger(refund_ticket):
    run = _resolved(refund_ticket())

    spans = list(run.spans.filter(kind=Span.Kind.TOOL, name__in=["issue_refund", "send_reply"]))
    assert len(spans) == 2
    for span in spans:
        span.run = run
        effect = Effect.objects.get(idempotency_key=span.attributes["idempotency_key"])
        assert span.input == {"ledger": "request"} and span.output == {"ledger": "result"}
        assert span_input(span) == effect.request and span_output(span) == effect.result
        assert span_as_dict(span)["output"] == effect.result
    refund = next(s for s in spans if s.name == "issue_refund")
    assert span_output(refund)["refund_id"].startswith("re_")


def _replied_with_a_secret(submit, scripted) -> tuple[Run, str]:
    """A run whose reply's body holds a secret, advanced to its end."""
    body = f"Your key {SECRET} was disabled; no charge was made."
    scripted([tool_use("send_reply", {"body": body})], [text("Done.")])
    run = submit("Was I charged?")
    run_advance(run_id=run.pk, worker="w")
    return Run.objects.get(pk=run.pk), body


def test_what_the_ledger_holds_is_shown_redacted(submit, scripted):
    run, body = _replied_with_a_secret(submit, scripted)

    span = run.spans.get(kind=Span.Kind.TOOL, name="send_reply")
    span.run = run
    assert Effect.objects.get(tool="send_reply", run=run).request == {"body": body}
    assert span_input(span) == {"body": body.replace(SECRET, "[REDACTED secret]")}
    assert SECRET not in str(span_as_dict(span))


def test_a_tool_span_whose_ledger_row_is_gone_says_so(submit):
    run = submit("Where is my parcel?")
    span = Span(
        run=run,
        kind=Span.Kind.TOOL,
        input={"ledger": "request"},
        output={"ledger": "result"},
        attributes={"idempotency_key": "refund:none"},
    )
    assert span_input(span)["unavailable"] == NO_LEDGER_ROW
    assert span_output(span)["unavailable"] == NO_LEDGER_ROW
    assert span_unreadable(span) == ["input", "output"]
    policy = Span(run=run, kind=Span.Kind.POLICY, input={"tool_use_id": "toolu_gone"})
    assert span_input(policy) == {"tool_use_id": "toolu_gone", "unavailable": NO_VALIDATION}


def test_the_trace_page_shows_what_the_spans_point_at(client, support_lead, refund_ticket):
    run = refund_ticket()
    run_advance(run_id=run.pk, worker="w")
    run = Run.objects.get(pk=run.pk)
    client.force_login(support_lead)

    def detail(span: Span) -> str:
        url = reverse("span_detail", args=[run.code, span.span_id])
        return client.get(url, headers={"HX-Request": "true"}).content.decode()

    first = _model_spans(run)[0]
    html = detail(first)
    assert "Input messages" in html and "arrived broken. Please refund it." in html
    assert "Output blocks" in html and "lookup_order" in html
    assert "&quot;turns&quot;" not in html and "&quot;turn&quot;" not in html
    refund = run.spans.get(kind=Span.Kind.TOOL, name="issue_refund")
    assert "&quot;refund_id&quot;: &quot;re_" in detail(refund)
    lookup = run.spans.get(kind=Span.Kind.TOOL, name="lookup_order")
    assert "&quot;refundable_cents&quot;: 2000" in detail(lookup)
    assert "&quot;tool_result&quot;" not in detail(lookup)
    reply = run.spans.get(kind=Span.Kind.VALIDATE, name="send_reply")
    assert "&quot;as sent&quot;" not in detail(reply) and "refund of $20.00" in detail(reply)
    download = client.get(reverse("run_trace_json", args=[run.code])).json()
    shown = {s["span_id"]: s for s in download["spans"]}
    assert shown[first.span_id]["input"]["messages"][0]["role"] == "user"
    assert shown[refund.span_id]["input"]["order_id"].startswith("ORD-")
    assert shown[lookup.span_id]["output"]["refundable_cents"] == 2000
    assert shown[reply.span_id]["output"]["resolved"]["body"] == run.reply


def test_a_policy_span_reads_the_arguments_its_call_s_validation_resolved(refund_ticket):
    run = _resolved(refund_ticket())

    policy = run.spans.get(kind=Span.Kind.POLICY, name="issue_refund")
    validation = run.spans.get(kind=Span.Kind.VALIDATE, name="issue_refund")
    policy.run = run
    assert policy.input == {"tool_use_id": validation.input["tool_use_id"]}
    assert span_input(policy) == validation.output["resolved"]
    assert span_input(policy)["currency"] == "USD"  # resolved: the model did not send it


def test_a_read_tool_s_span_reads_its_answer_from_the_tool_result(refund_ticket):
    run = _resolved(refund_ticket())

    span = run.spans.get(kind=Span.Kind.TOOL, name="lookup_order")
    span.run = run
    validate = run.spans.get(kind=Span.Kind.VALIDATE, name="lookup_order")
    use_id = validate.input["tool_use_id"]
    assert span.output == {"tool_result": use_id}  # no second copy of the order
    given = next(
        b
        for m in run.messages
        if m["role"] == "user" and isinstance(m["content"], list)
        for b in m["content"]
        if b.get("tool_use_id") == use_id
    )
    answer = span_output(span)
    assert answer == json.loads(given["content"]) and answer["refundable_cents"] == 2000
    assert span_as_dict(span)["output"] == answer


def test_a_read_tool_s_answer_is_read_redacted_and_before_the_next_model_step(submit):
    run = submit("Where is my parcel?")
    answer = {"order_id": "ORD-1", "note": f"key {SECRET}"}
    run.tool_results = [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": json.dumps(answer)}
    ]
    span = Span(run=run, kind=Span.Kind.TOOL, output=tool_result_ref("toolu_1", answer))
    assert span.output == {"tool_result": "toolu_1"}
    assert span_output(span) == {"order_id": "ORD-1", "note": "key [REDACTED secret]"}
    gone = Span(run=run, kind=Span.Kind.TOOL, output={"tool_result": "toolu_gone"})
    assert span_output(gone)["unavailable"] == NO_TOOL_RESULT
    assert span_unreadable(gone) == ["output"]


def test_an_answer_json_would_not_give_back_is_kept_as_it_was():
    # A datetime, a tuple, a Decimal or a non-finite float reads back changed from the
    # tool_result's JSON: the span keeps its copy.
    for answer in (
        {"at": timezone.now()},
        {"ids": (1, 2)},
        {"amount": Decimal("1.50")},
        {"ratio": float("nan")},
        {1: "a"},
    ):
        assert tool_result_ref("toolu_1", answer) is answer
    assert tool_result_ref("", {"a": 1}) == {"a": 1}  # no id to point at
    assert tool_result_ref("toolu_1", {"a": [1, 2.5, None, True]}) == {"tool_result": "toolu_1"}


def test_a_validation_that_changed_nothing_points_at_the_arguments_as_sent(refund_ticket):
    run = _resolved(refund_ticket())

    reply = run.spans.get(kind=Span.Kind.VALIDATE, name="send_reply")
    reply.run = run
    assert reply.output == {"resolved": AS_SENT, "notes": []}
    assert reply.attributes == {}  # its name is the tool's: no second copy
    assert span_output(reply) == {"resolved": {"body": run.reply}, "notes": []}
    # The policy check reads what the validation resolved through it.
    policy = run.spans.get(kind=Span.Kind.POLICY, name="send_reply")
    policy.run = run
    assert span_input(policy) == {"body": run.reply}
    # A refund's validation adds the order's currency: a copy of its own.
    refund = run.spans.get(kind=Span.Kind.VALIDATE, name="issue_refund")
    assert refund.output["resolved"]["currency"] == "USD"


def test_a_validation_that_resolved_something_keeps_what_it_resolved():
    sent = {"order_id": "1Z999AA10123456784"}
    resolved = {"order_id": "ORD-7"}
    notes = ["1Z999AA10123456784 is a tracking number: order ORD-7"]
    assert resolved_ref(sent, resolved, notes) == {"resolved": resolved, "notes": notes}
    assert resolved_ref(sent, dict(sent), notes)["resolved"] == sent  # a note: a copy
    assert resolved_ref({"amount": "5"}, {"amount": 5}, [])["resolved"] == {"amount": 5}
    assert resolved_ref(sent, dict(sent), []) == {"resolved": AS_SENT, "notes": []}


def test_what_a_policy_checked_is_read_redacted_through_the_arguments_as_sent(submit, scripted):
    run, body = _replied_with_a_secret(submit, scripted)

    validate = run.spans.get(kind=Span.Kind.VALIDATE, name="send_reply")
    policy = run.spans.get(kind=Span.Kind.POLICY, name="send_reply")
    validate.run = policy.run = run
    assert validate.output["resolved"] == AS_SENT
    shown = {"body": body.replace(SECRET, "[REDACTED secret]")}
    assert span_output(validate)["resolved"] == shown
    assert span_input(policy) == shown


def test_every_span_of_a_finished_run_is_readable(refund_ticket):
    run = _resolved(refund_ticket())
    spans = list(run.spans.select_related("run__ticket"))
    assert len(spans) == 14 and not any(span_unreadable(s) for s in spans)
    # A tool's own answer that happens to say "unavailable" is not a pointer.
    answer = Span(run=run, kind=Span.Kind.TOOL, output={"unavailable": "out of stock"})
    assert span_unreadable(answer) == []


def test_a_tool_use_id_used_twice_in_a_run_shows_each_call_its_own(make_order, submit, scripted):
    # A gateway in front of the model may number its tool calls per response: the same
    # id in two steps. The runtime renames the second (runtime.output), so the spans'
    # pointers by id each read their own call's arguments and answer.
    first, second = make_order(total_cents=1100), make_order(total_cents=2200)
    scripted(
        [tool_use("lookup_order", {"order_id": first.order_id}, id="call_1")],
        [tool_use("lookup_order", {"order_id": second.order_id}, id="call_1")],
        [text("Both found.")],
    )
    run = submit("Where are my two parcels?")
    run_advance(run_id=run.pk, worker="w")
    run = Run.objects.get(pk=run.pk)

    for step, order in ((1, first), (2, second)):
        validate = run.spans.get(kind=Span.Kind.VALIDATE, step=step)
        answer = run.spans.get(kind=Span.Kind.TOOL, name="lookup_order", step=step)
        validate.run = answer.run = run
        assert span_input(validate)["input"] == {"order_id": order.order_id}
        assert span_output(validate)["resolved"] == {"order_id": order.order_id}
        assert span_output(answer)["total_cents"] == order.total_cents
