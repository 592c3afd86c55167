"""Where a replayed run's model responses and tool results come from.

A production run asks the model and executes its tools. A replayed run
(agentops.replay starts them) takes them from other sources:

- exact: model responses and tool results come from the recording (the original
  run's conversation and spans). Nothing live is called, nothing is executed, the
  ledger is not touched. Today's code still validates, applies policy and checks
  grounding, and each of its decisions is compared with the recorded one; the first
  difference raises Diverged, which ends the replay with the divergence recorded.
- fork: the recorded conversation up to step N is copied (by agentops.replay); from
  N the model is live. Side effects are dry unless the run is live: recorded as
  "would have executed" with their arguments, no ledger row, no provider call.
- rerun: everything live; side effects go through the same ledger, which returns
  what the original already did.

Exact replays and dry runs read the shop as it was when the original started:
refunds made since are left out, and so are ledger rows written since, so a
business rule sees what the original saw. (The risk policy's rolling per-customer
rules read today's refunds: a replay of a refunded ticket may count its own refund.)
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from agentops.integrations.errors import ProviderRejected, ProviderUnavailable
from agentops.integrations.llm import ModelResponse
from agentops.integrations.orders import OrderDirectory, OrderInfo, RefundInfo
from agentops.models import Effect, Run
from agentops.runtime.errors import TRANSIENT
from agentops.runtime.tools import TOOLS, canonical_json
from traces.models import Span
from traces.payloads import resolved_args, span_input
from traces.redact import redact

MODEL_CALL = "messages.create"


class Diverged(Exception):
    """Today's code departed from the recording; the replay stops here."""

    def __init__(
        self,
        *,
        step: int,
        stage: str,
        expected,
        actual,
        tool: str = "",
        tool_use_id: str = "",
        spans: list[Span] | None = None,
    ) -> None:
        self.divergence = {
            "step": step,
            "stage": stage,
            "tool": tool,
            "tool_use_id": tool_use_id,
            "expected": expected,
            "actual": actual,
        }
        # The step's spans so far, saved with the end: the trace shows where it departed.
        self.spans = list(spans or [])
        if self.spans:
            last = self.spans[-1]
            last.attributes = {**(last.attributes or {}), "diverged": True}
        super().__init__(divergence_text(self.divergence))


def divergence_text(d: dict) -> str:
    what = f"{d['stage']} of {d['tool']}" if d.get("tool") else d["stage"]
    return (
        f"Diverged from the recording at step {d['step']} ({what}): "
        f"recorded {_brief(d['expected'])}; now {_brief(d['actual'])}"
    )


def _brief(value, limit: int = 300) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def signature(tool: str, args: dict) -> str:
    """A tool call's signature, as keys of `tool_results`: 'lookup_order:{"order_id":"ORD-1"}'."""
    return f"{tool}:{canonical_json(args)}"


# --- the recording ---------------------------------------------------------------------


@dataclass
class Recording:
    """What the original run did, step by step, read from its conversation and spans."""

    original: Run
    # Model step -> its recorded attempts, in order: a response, or an error to raise.
    attempts: dict[int, list[dict]]
    # tool_use_id -> the tool_result block the original answered it with.
    results: dict[str, dict]
    # tool_use_id -> the original's validation: {"resolved": args} or {"error": code}.
    validations: dict[str, dict]
    # (step, tool) -> [(redacted args, policy outcome)], in order.
    policies: dict[tuple[int, str], list[tuple[dict, str]]]

    @classmethod
    def of(cls, original: Run) -> Recording:
        assistants = [m for m in original.messages if m.get("role") == "assistant"]
        results: dict[str, dict] = {}
        for message in original.messages:
            if message.get("role") == "user" and isinstance(message.get("content"), list):
                for block in message["content"]:
                    if isinstance(block, dict) and block.get("type") == "tool_result":
                        results[block.get("tool_use_id")] = block
        for block in original.tool_results:
            results[block.get("tool_use_id")] = block

        attempts: dict[int, list[dict]] = {}
        validations: dict[str, dict] = {}
        policies: dict[tuple[int, str], list[tuple[dict, str]]] = {}
        spans = original.spans.exclude(status=Span.Status.STARTED).order_by("started_at", "id")
        for span in spans.filter(kind__in=[Span.Kind.MODEL, Span.Kind.VALIDATE, Span.Kind.POLICY]):
            if span.kind == Span.Kind.MODEL and span.name == MODEL_CALL:
                attempts.setdefault(span.step, []).append(_attempt_of(span, assistants))
            elif span.kind == Span.Kind.VALIDATE:
                use_id = (span.input or {}).get("tool_use_id")
                out = span.output or {}
                if span.error_class:
                    validations[use_id] = {"error": out.get("code") or span.error_class}
                else:
                    # Read from the original's turns when they are the arguments as sent.
                    validations[use_id] = {"resolved": redact(resolved_args(span))}
            elif span.kind == Span.Kind.POLICY and span.name in TOOLS:
                outcome = (span.output or {}).get("outcome", "")
                # What it checked, as the trace reads it (the validation's resolved arguments).
                checked = span_input(span)
                policies.setdefault((span.step, span.name), []).append((checked, outcome))
        return cls(original, attempts, results, validations, policies)

    @property
    def ended(self) -> dict:
        o = self.original
        return {"status": o.status, "step": o.model_calls, "reason": o.outcome_reason}


def _attempt_of(span: Span, assistants: list[dict]) -> dict:
    if span.error_class:
        return {
            "error_class": span.error_class,
            "message": span.error_message,
            "code": (span.attributes or {}).get("code") or "rejected",
        }
    # The conversation holds the step's content unredacted; the span holds its stop reason.
    content = assistants[span.step - 1]["content"] if span.step <= len(assistants) else []
    if content == [{"type": "text", "text": "(empty response)"}]:
        content = []  # output.review_response's placeholder for an empty answer
    return {
        "content": content,
        "stop_reason": (span.output or {}).get("stop_reason") or "end_turn",
        "id": (span.attributes or {}).get("response_id", ""),
        "usage": {"input_tokens": span.input_tokens, "output_tokens": span.output_tokens},
    }


class RecordedModel:
    """A model client that answers one step with its recorded attempts, in order."""

    def __init__(self, attempts: list[dict], model: str) -> None:
        self.attempts = list(attempts)
        self.model = model

    def create(self, *, model, system, messages, tools, max_tokens) -> ModelResponse:
        # The last recorded attempt stands for any further ones the retry policy asks for.
        item = self.attempts.pop(0) if len(self.attempts) > 1 else self.attempts[0]
        if "error_class" in item:
            if item["error_class"] == TRANSIENT:
                raise ProviderUnavailable(f"(recorded) {item['message']}", provider="recording")
            raise ProviderRejected(
                f"(recorded) {item['message']}", provider="recording", code=item["code"]
            )
        # No usage: a replayed response costs nothing; the span keeps the recorded figures.
        return ModelResponse(
            content=item["content"],
            stop_reason=item["stop_reason"],
            model=self.model,
            usage={},
            id=item["id"],
        )


# --- the shop and the ledger as they were ------------------------------------------------


class OrdersAsOf:
    """The order directory without the refunds made at or after a moment; read-only."""

    def __init__(self, inner: OrderDirectory, moment: datetime) -> None:
        self.inner = inner
        self.moment = moment

    def _order(self, order: OrderInfo | None) -> OrderInfo | None:
        if order is None:
            return None
        kept = tuple(r for r in order.refunds if r.created_at < self.moment)
        return dataclasses.replace(order, refunds=kept)

    def get(self, order_id: str) -> OrderInfo | None:
        return self._order(self.inner.get(order_id))

    def find_by_tracking_number(self, tracking_number: str) -> OrderInfo | None:
        return self._order(self.inner.find_by_tracking_number(tracking_number))

    def for_customer(self, email: str) -> list[OrderInfo]:
        return [self._order(o) for o in self.inner.for_customer(email)]

    def refunds_for_customer(self, email: str, *, since: datetime) -> list[RefundInfo]:
        return [
            r
            for r in self.inner.refunds_for_customer(email, since=since)
            if r.created_at < self.moment
        ]

    def record_refund(self, **kwargs) -> None:
        raise RuntimeError("A replay never writes to the order system.")


class NoGateway:
    """The payment gateway of a run that must not reach the provider."""

    name = "none (replay)"

    def __getattr__(self, name):
        raise RuntimeError(f"A replay that executes nothing called the gateway ({name}).")


# --- the plan of one replayed run ------------------------------------------------------


@dataclass
class Provided:
    """A tool result that did not come from executing the tool."""

    content: dict
    is_error: bool
    span: Span


class ReplayPlan:
    """How one replayed run gets its model responses and tool results."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.original: Run = run.replay_of
        self.exact = run.mode == Run.Mode.EXACT
        self.dry_run = run.dry_run
        self.given: dict = run.replay_tool_results or {}
        self._recording: Recording | None = None

    @classmethod
    def for_run(cls, run: Run) -> ReplayPlan | None:
        return cls(run) if run.is_replay else None

    @property
    def recording(self) -> Recording:
        if self._recording is None:
            self._recording = Recording.of(self.original)
        return self._recording

    @property
    def as_of(self) -> datetime | None:
        """Exact replays and dry runs see the world as the original started in it."""
        if self.exact or self.dry_run:
            return self.original.started_at or self.original.created_at
        return None

    def recorded_run_ids(self) -> list[int]:
        """The original, and the runs it replayed or forked from: where its approvals are."""
        ids, run = [], self.original
        while run is not None and len(ids) < 20:
            ids.append(run.pk)
            if run.mode not in (Run.Mode.EXACT, Run.Mode.FORK, Run.Mode.EVAL, Run.Mode.SHADOW):
                break
            run = run.replay_of
        return ids

    def adapt_context(self, ctx) -> None:
        if self.as_of is not None:
            ctx.orders = OrdersAsOf(ctx.orders, self.as_of)
            ctx.gateway = NoGateway()

    def in_ledger(self, key: str) -> bool:
        effects = Effect.objects.filter(idempotency_key=key)
        if self.as_of is not None:
            effects = effects.filter(created_at__lt=self.as_of)
        return effects.exists()

    # --- model responses ---

    def model_client(self, *, step: int, model: str) -> RecordedModel | None:
        """The recorded model for an exact replay's step (None: ask the live model)."""
        if not self.exact:
            return None
        attempts = self.recording.attempts.get(step)
        if not attempts:
            raise Diverged(
                step=step,
                stage="model",
                expected={"ended": self.recording.ended},
                actual="today's code asks the model for another step",
            )
        return RecordedModel(attempts, model)

    def triage(self):
        """An exact replay's triage: the recorded decision, no model call."""
        from agentops.runtime.triage import TriageDecision

        names = {f.name for f in dataclasses.fields(TriageDecision)}
        recorded = {k: v for k, v in (self.original.triage or {}).items() if k in names}
        if not recorded:
            # The original ended before its triage (the autonomy share sent it to a person).
            raise Diverged(
                step=0,
                stage="triage",
                expected={"ended": self.recording.ended},
                actual="today's code admits the ticket and triages it",
            )
        recorded.update(
            input_tokens=0,
            output_tokens=0,
            cost=Decimal(0),
            attributes={"source": "recording"},
            route_model=self.run.model or recorded.get("route_model", ""),
        )
        return TriageDecision(**recorded)

    # --- comparisons (exact replays) ---

    def check_validated(
        self, *, step: int, tool_use: dict, resolved_args: dict, spans: list[Span]
    ) -> None:
        if not self.exact:
            return
        use_id = tool_use.get("id", "")
        recorded = self.recording.validations.get(use_id)
        now = {"resolved": redact(resolved_args)}
        if recorded != now:
            raise Diverged(
                step=step,
                stage="validation",
                tool=tool_use.get("name", ""),
                tool_use_id=use_id,
                expected=recorded or "no validation of this call",
                actual=now,
                spans=spans,
            )

    def check_policy(
        self, *, step: int, tool: str, args: dict, decision, spans: list[Span]
    ) -> None:
        if not self.exact:
            return
        args = redact(args)
        recorded = self.recording.policies.get((step, tool), [])
        outcome = next((o for a, o in recorded if a == args), None)
        if outcome != decision.outcome:
            raise Diverged(
                step=step,
                stage="policy",
                tool=tool,
                expected={"outcome": outcome} if outcome else "no policy check of these arguments",
                actual={
                    "outcome": decision.outcome,
                    "tripped": [r.rule for r in decision.tripped],
                },
                spans=spans,
            )

    def check_answer(
        self, *, step: int, tool_use: dict, content: dict, is_error: bool, spans: list[Span]
    ) -> None:
        """The tool_result today's code gives must match the recorded one in outcome."""
        if not self.exact:
            return
        use_id = tool_use.get("id", "")
        block = self.recording.results.get(use_id)
        now = _outcome(content, is_error)
        recorded = _outcome(_content_of(block), bool(block.get("is_error"))) if block else None
        if recorded != now:
            raise Diverged(
                step=step,
                stage="tool result",
                tool=tool_use.get("name", ""),
                tool_use_id=use_id,
                expected=recorded or "the original did not answer this call",
                actual=now,
                spans=spans,
            )

    def end_divergence(self, *, status: str, reason: str, step: int) -> dict | None:
        """An exact replay that ends otherwise than its recording: the divergence."""
        if not self.exact:
            return None
        ended = self.recording.ended
        if ended["status"] == status and ended["step"] == step:
            return None
        return Diverged(
            step=step,
            stage="end",
            expected=ended,
            actual={"status": status, "step": step, "reason": reason},
        ).divergence

    def missing_approval(
        self, *, step: int, tool: str, tool_use: dict, spans: list[Span]
    ) -> Diverged:
        return Diverged(
            step=step,
            stage="approval",
            tool=tool,
            tool_use_id=tool_use.get("id", ""),
            expected="no approval asked",
            actual="today's policy asks a person to approve",
            spans=spans,
        )

    # --- tool results that are not executed ---

    def provided(
        self, *, tool, tool_use: dict, args: dict, step: int, key: str, span, spans: list[Span]
    ) -> Provided | None:
        """The result of a call that is not executed, or None to execute it.

        `span` builds a started span of the run (Runner._span); `spans` are the call's so far.
        """
        if self.exact:
            block = self.recording.results.get(tool_use.get("id", ""))
            if block is None:
                raise Diverged(
                    step=step,
                    stage="tool",
                    tool=tool.name,
                    tool_use_id=tool_use.get("id", ""),
                    expected="the original did not run this call",
                    actual={"would_execute": tool.name, "arguments": args},
                    spans=spans,
                )
            return self._span_for(
                span(kind=Span.Kind.TOOL, name=tool.name, step=step, input=args),
                _content_of(block),
                bool(block.get("is_error")),
                {"source": "recording"},
            )
        given = self.given.get(signature(tool.name, args), self.given.get(tool.name))
        if tool.side_effect and self.dry_run:
            content = given if isinstance(given, dict) else _would_have(tool.name, args)
            built = span(
                kind=Span.Kind.TOOL,
                name=tool.name,
                step=step,
                input=args,
                attributes={"idempotency_key": key},
            )
            attributes = {"dry_run": True, "would_execute": True, "source": "dry run"}
            provided = self._span_for(built, content, "error" in content, attributes)
            provided.span.output = redact({"would_have_executed": {"tool": tool.name, **args}})
            return provided
        if not tool.side_effect and isinstance(given, dict):
            built = span(kind=Span.Kind.TOOL, name=tool.name, step=step, input=args)
            return self._span_for(built, given, "error" in given, {"source": "given"})
        return None

    @staticmethod
    def _span_for(span, content: dict, is_error: bool, attributes: dict) -> Provided:
        from traces.services import span_finish

        span_finish(
            span,
            output=content,
            error_class="terminal" if is_error else "",
            error_message=str(content.get("message", content.get("error", ""))) if is_error else "",
            attributes=attributes,
        )
        return Provided(content=content, is_error=is_error, span=span)

    def dry_refunds_cents(self) -> list[int]:
        """Refunds this dry run would have made, for the reply's grounding check."""
        spans = self.run.spans.filter(kind=Span.Kind.TOOL, name="issue_refund", status="ok")
        return [
            int(s.input["amount_cents"])
            for s in spans
            if (s.attributes or {}).get("dry_run") and isinstance(s.input, dict)
        ]


def _would_have(tool: str, args: dict) -> dict:
    return {
        **args,
        "status": "dry_run",
        "dry_run": True,
        "note": f"Dry run: {tool} was recorded with these arguments and not executed.",
    }


def _content_of(block: dict | None) -> dict:
    if not block:
        return {}
    raw = block.get("content")
    if isinstance(raw, str):
        try:
            value = json.loads(raw)
        except ValueError:
            return {"text": raw}
        return value if isinstance(value, dict) else {"value": value}
    return {"value": raw}


def _outcome(content: dict, is_error: bool) -> dict:
    """What counts as the same outcome: the same error code, or the same result."""
    if is_error:
        return {"is_error": True, "error": content.get("error")}
    return {"is_error": False, "result": redact(content)}
