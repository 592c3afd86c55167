"""A span's input and output as recorded, with what its run already holds read from it.

A span stores where a payload is, rather than a second copy, when the run keeps it
in the same transaction (issue 8: the copies were ~3.7 KB of a ticket's WAL):
- a model span whose call succeeded: input {"turns": [first, last]}, the messages
  the call sent that no earlier span holds; output {"turn": n, "stop_reason": ...},
  the model's turn (agentops_turn). A failed attempt's span keeps its copy: what it
  sent may never become a turn;
- a validation span's input {"tool_use_id": id}: the arguments as the model sent
  them are in its turn; a policy span's too: it checked what the validation resolved;
- the triage span: the ticket's subject and body ({"ticket": ["subject", "body"]})
  and the run's triage ({"run": "triage"});
- a side effect's tool span: its ledger row's request and, once it succeeded, its
  result ({"ledger": "request"}, {"ledger": "result"}; the row's key is the span's
  idempotency_key attribute);
- a read tool's span: its answer, when the tool_result the model was given holds it
  unchanged ({"tool_result": id}; in the run's turns, or in its tool_results until
  the next model step: either is written with the span);
- a validation span's resolved arguments, when they are the arguments as the model
  sent them, unchanged and with no notes ({"resolved": "as sent", ...}).
They are read back here and redacted as a copy was when it was written, so every
reader of a span (the trace page, its JSON, the download) sees what it saw before.
What a span points at and no longer finds is said to be unavailable.
"""

from __future__ import annotations

import json
import math
from typing import Any

from traces.models import Span
from traces.redact import redact

# What a reader gets when the run no longer holds what a span points at.
NO_TURNS = "the run's conversation no longer holds these turns"
NO_VALIDATION = "the run holds no validation of this tool call"
NO_LEDGER_ROW = "the ledger holds no such row"
NO_TOOL_RESULT = "the run holds no answer to this tool call"


def _unavailable(value: dict, why: str) -> dict:
    return {**value, "unavailable": why}


def span_unreadable(span: Span) -> list[str]:
    """The parts of the span ("input", "output") that point at what the run does not
    hold: none, if each was written in the transaction of what it points at."""
    missing = (NO_TURNS, NO_VALIDATION, NO_LEDGER_ROW, NO_TOOL_RESULT)
    return [
        name
        for name, read in (("input", span_input), ("output", span_output))
        if isinstance(value := read(span), dict) and value.get("unavailable") in missing
    ]


def turns_ref(first: int, last: int) -> dict:
    """A model span's input: the run's turns first..last (inclusive)."""
    return {"turns": [first, last]}


def turn_ref(turn: int, *, stop_reason: str | None) -> dict:
    """A model span's output: the model's answer is the run's turn `turn`."""
    return {"turn": turn, "stop_reason": stop_reason}


# A triage span's input and output: what the ticket and the run hold.
TICKET_TEXT = {"ticket": ["subject", "body"]}
RUN_TRIAGE = {"run": "triage"}
# A side effect's tool span's input and output: what its ledger row holds.
LEDGER_REQUEST = {"ledger": "request"}
LEDGER_RESULT = {"ledger": "result"}


# A validation span's resolved arguments when they are the arguments as sent.
AS_SENT = "as sent"


def tool_result_ref(tool_use_id: str, result: Any) -> Any:
    """A read tool span's output: where the run keeps `result`, if the tool_result the
    model is given (its JSON) reads back as `result` itself; else `result`."""
    if tool_use_id and _json_native(result):
        return {"tool_result": tool_use_id}
    return result


def resolved_ref(raw_input: Any, resolved: dict, notes: list) -> dict:
    """A validation span's output: the resolved arguments, or AS_SENT when they are the
    arguments as sent (the model's turn holds those)."""
    same = not notes and isinstance(raw_input, dict) and raw_input == resolved
    return {"resolved": AS_SENT if same and _json_native(resolved) else resolved, "notes": notes}


def _json_native(value: Any) -> bool:
    """Whether JSON gives `value` back equal (a datetime, a tuple or a Decimal does not)."""
    if isinstance(value, dict):
        return all(type(k) is str and _json_native(v) for k, v in value.items())
    if type(value) is list:
        return all(_json_native(v) for v in value)
    return (
        value is None
        or type(value) in (str, int, bool)
        or (type(value) is float and math.isfinite(value))
    )


def _ledger(span: Span, field: str, value: dict) -> Any:
    """The request or result of the ledger row under the span's idempotency key."""
    from agentops.models import Effect

    key = (span.attributes or {}).get("idempotency_key")
    rows = span.run.__dict__.setdefault("_ledger_rows", {})
    if key not in rows:
        rows[key] = Effect.objects.filter(idempotency_key=key).first() if key else None
    found = getattr(rows[key], field, None) if rows[key] is not None else None
    if found is None:
        return _unavailable(value, NO_LEDGER_ROW)
    return redact(found)


def _is_call_ref(value: Any) -> bool:
    """A validation or policy span's input that names its tool call only."""
    return isinstance(value, dict) and set(value) == {"tool_use_id"}


def _is_as_sent(value: Any) -> bool:
    return isinstance(value, dict) and value.get("resolved") == AS_SENT


def _is_result_ref(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"tool_result"}


def _is_turns_ref(value: Any) -> bool:
    if not (isinstance(value, dict) and set(value) == {"turns"}):
        return False
    bounds = value["turns"]
    return isinstance(bounds, list) and len(bounds) == 2 and all(type(b) is int for b in bounds)


def _is_turn_ref(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and set(value) == {"turn", "stop_reason"}
        and type(value["turn"]) is int
    )


def _tool_use(messages: list[dict], tool_use_id: str) -> dict | None:
    for message in reversed(messages):
        content = message.get("content") if message.get("role") == "assistant" else None
        for block in content if isinstance(content, list) else []:
            if isinstance(block, dict) and block.get("id") == tool_use_id:
                return block
    return None


def _resolved(span: Span, tool_use_id: str) -> Any:
    """The arguments the run's validation of tool call `tool_use_id` resolved."""
    resolved = span.run.__dict__.get("_resolved_by_call")
    if resolved is None:
        validations = Span.objects.filter(run_id=span.run_id, kind=Span.Kind.VALIDATE)
        resolved = {}
        for v in validations.only("input", "output"):
            v.run = span.run
            found = resolved_args(v)
            resolved[(v.input or {}).get("tool_use_id")] = None if found is None else redact(found)
        span.run.__dict__["_resolved_by_call"] = resolved
    return resolved.get(tool_use_id)


def resolved_args(validation: Span) -> Any:
    """The arguments a validation span resolved (None when it refused them), read from
    the model's turn when they are the arguments as sent. Not redacted."""
    resolved = (validation.output or {}).get("resolved")
    if resolved != AS_SENT:
        return resolved
    block = _tool_use(validation.run.messages, (validation.input or {}).get("tool_use_id"))
    return None if block is None else block.get("input")


def _tool_result(run, tool_use_id: str) -> dict | None:
    """The tool_result block answering `tool_use_id`: in a turn, or still in the run's
    tool_results (a read tool's answer before the next model step)."""
    for message in reversed(run.messages):
        content = message.get("content") if message.get("role") == "user" else None
        for block in content if isinstance(content, list) else []:
            if _answers(block, tool_use_id):
                return block
    return next((b for b in run.tool_results if _answers(b, tool_use_id)), None)


def _answers(block: Any, tool_use_id: str) -> bool:
    return (
        isinstance(block, dict)
        and block.get("type") == "tool_result"
        and block.get("tool_use_id") == tool_use_id
    )


def span_input(span: Span) -> Any:
    """The span's input, what it points at read from its run (see the module doc)."""
    value = span.input
    if span.kind == Span.Kind.VALIDATE and _is_call_ref(value):
        block = _tool_use(span.run.messages, value["tool_use_id"])
        if block is None:
            return _unavailable(value, NO_TURNS)
        return {**value, "input": redact(block.get("input"))}
    if span.kind == Span.Kind.POLICY and _is_call_ref(value):
        found = _resolved(span, value["tool_use_id"])
        return _unavailable(value, NO_VALIDATION) if found is None else found
    if span.kind == Span.Kind.TOOL and value == LEDGER_REQUEST:
        return _ledger(span, "request", value)
    if span.kind == Span.Kind.TRIAGE and value == TICKET_TEXT:
        ticket = span.run.ticket
        return {"subject": redact(ticket.subject), "body": redact(ticket.body)}
    if span.kind != Span.Kind.MODEL or not _is_turns_ref(value):
        return value
    first, last = value["turns"]
    messages = span.run.messages
    if not 0 <= first <= last < len(messages):
        return _unavailable(value, NO_TURNS)
    return {"messages": redact(messages[first : last + 1])}


def span_output(span: Span) -> Any:
    """The span's output, what it points at read from its run (see the module doc)."""
    value = span.output
    if span.kind == Span.Kind.TOOL and value == LEDGER_RESULT:
        return _ledger(span, "result", value)
    if span.kind == Span.Kind.TOOL and _is_result_ref(value):
        block = _tool_result(span.run, value["tool_result"])
        if block is None:
            return _unavailable(value, NO_TOOL_RESULT)
        return redact(json.loads(block["content"]))
    if span.kind == Span.Kind.VALIDATE and _is_as_sent(value):
        found = resolved_args(span)
        if found is None:
            return _unavailable(value, NO_TURNS)
        return {**value, "resolved": redact(found)}
    if span.kind == Span.Kind.TRIAGE and value == RUN_TRIAGE:
        return redact(span.run.triage)
    if span.kind != Span.Kind.MODEL or not _is_turn_ref(value):
        return value
    messages = span.run.messages
    turn = value["turn"]
    if not 0 <= turn < len(messages) or messages[turn].get("role") != "assistant":
        return _unavailable(value, NO_TURNS)
    return {"content": redact(messages[turn].get("content")), "stop_reason": value["stop_reason"]}
