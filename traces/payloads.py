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
  idempotency_key attribute).
They are read back here and redacted as a copy was when it was written, so every
reader of a span (the trace page, its JSON, the download) sees what it saw before.
What a span points at and no longer finds is said to be unavailable.
"""

from __future__ import annotations

from typing import Any

from traces.models import Span
from traces.redact import redact

# What a reader gets when the run no longer holds what a span points at.
NO_TURNS = "the run's conversation no longer holds these turns"
NO_VALIDATION = "the run holds no validation of this tool call"
NO_LEDGER_ROW = "the ledger holds no such row"


def _unavailable(value: dict, why: str) -> dict:
    return {**value, "unavailable": why}


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
        resolved = {
            (v.input or {}).get("tool_use_id"): (v.output or {}).get("resolved")
            for v in validations.only("input", "output")
        }
        span.run.__dict__["_resolved_by_call"] = resolved
    return resolved.get(tool_use_id)


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
    if span.kind == Span.Kind.TRIAGE and value == RUN_TRIAGE:
        return redact(span.run.triage)
    if span.kind != Span.Kind.MODEL or not _is_turn_ref(value):
        return value
    messages = span.run.messages
    turn = value["turn"]
    if not 0 <= turn < len(messages) or messages[turn].get("role") != "assistant":
        return _unavailable(value, NO_TURNS)
    return {"content": redact(messages[turn].get("content")), "stop_reason": value["stop_reason"]}
