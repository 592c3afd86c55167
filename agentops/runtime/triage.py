"""Triage: a cheap model classifies the ticket; the route table chooses the loop's model.

The triage model (TRIAGE_MODEL, claude-haiku-4-5 with a key, else the offline
model at price 0) answers with one `record_triage` tool call: intent, whether the
ticket is ambiguous, and the amount at stake. If it cannot (an error, malformed
output, or the day's budget is spent) the ticket is classified by rules instead,
and the decision says so: triage never loses a ticket.

The route table (agentops.routing.Route, in the admin) maps the classification to
the model that runs the loop; the first enabled matching route wins, and a ticket
no route matches runs on AGENT_MODEL. The decision and its reason are the run's
triage span.
"""

from __future__ import annotations

import functools
import time
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Annotated, Literal

from django.conf import settings
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from agentops.integrations.llm import get_model_client
from agentops.integrations.llm.offline import parse_ticket
from agentops.runtime.errors import classify
from agentops.runtime.pricing import model_cost, usage_attributes
from agentops.runtime.prompts import ticket_message
from agentops.runtime.readonce import once
from agentops.runtime.retry import backoff_delay, max_attempts

TRIAGE_TOOL = "record_triage"
TRIAGE_MAX_TOKENS = 300
TRIAGE_PROMPT = """You triage customer support tickets for an online shop. Read the ticket and
call record_triage once: the intent (refund, question or other), whether it is
ambiguous (a refund request without a clear order, several possible orders, a
dispute, or a request you cannot read plainly), and the amount at stake in minor
units (cents) if the ticket names one. Do not answer the customer."""


class TriageArgs(BaseModel):
    model_config = ConfigDict(extra="ignore")

    intent: Literal["refund", "question", "other"]
    ambiguous: bool
    amount_at_stake_cents: int | None = Field(default=None, ge=0, le=100_000_000)
    reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] = ""


@functools.cache
def triage_tool() -> dict:
    # Built once a process: pydantic took ~0.8 ms for the schema, at every triage.
    schema = TriageArgs.model_json_schema()
    schema.pop("title", None)
    return {
        "name": TRIAGE_TOOL,
        "description": "Record the ticket's intent, ambiguity and amount at stake.",
        "input_schema": schema,
    }


@dataclass(frozen=True)
class TriageDecision:
    model: str
    intent: str
    ambiguous: bool
    amount_at_stake_cents: int | None
    route_model: str
    reason: str
    route: str = ""
    classified_by: str = "model"  # model / rules
    input_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal = Decimal(0)
    attributes: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        data = asdict(self)
        data["cost"] = str(self.cost)
        data.pop("attributes")
        return data


def _order_amount(reference: str | None) -> int | None:
    """The order's refundable amount, when the ticket names an order and states no amount."""
    if not reference:
        return None
    from agentops.integrations.orders import get_order_directory

    order = get_order_directory().get(reference)
    return order.refundable_cents if order else None


def _rules(ticket) -> TriageArgs:
    parsed = parse_ticket(f"{ticket.subject}\n{ticket.body}")
    return TriageArgs(
        intent="refund" if parsed.wants_refund else "question",
        ambiguous=parsed.wants_refund and parsed.reference is None,
        amount_at_stake_cents=parsed.amount_cents,
        reason=(f"reference {parsed.reference}" if parsed.reference else "no order reference"),
    )


def _classify_with_model(ticket, model: str) -> tuple[TriageArgs, dict, str]:
    """Ask the triage model. Returns (classification, usage, response id); raises on failure."""
    client = get_model_client(model)
    limit = max_attempts()
    for attempt in range(1, limit + 1):
        try:
            response = client.create(
                model=model,
                system=TRIAGE_PROMPT,
                messages=[{"role": "user", "content": ticket_message(ticket)}],
                tools=[triage_tool()],
                max_tokens=TRIAGE_MAX_TOKENS,
            )
            break
        except Exception as exc:
            c = classify(exc)
            if not (c.retryable and attempt < limit):
                raise
            time.sleep(backoff_delay(attempt, retry_after=c.retry_after))
    use = next((b for b in response.tool_uses if b.get("name") == TRIAGE_TOOL), None)
    if use is None:
        raise ValueError(f"no {TRIAGE_TOOL} call in the response (stop {response.stop_reason})")
    if not isinstance(use.get("input"), dict):
        raise ValueError(f"{TRIAGE_TOOL} input is not an object")
    return TriageArgs.model_validate(use["input"]), response.usage or {}, response.id


def route_choose(*, intent: str, ambiguous: bool, amount_cents: int | None) -> tuple[str, str, str]:
    """(model, route name, reason) from the route table."""
    from agentops.routing.models import Route

    routes = once(
        "routes", lambda: list(Route.objects.filter(enabled=True).order_by("priority", "pk"))
    )
    for route in routes:
        if route.matches(intent=intent, ambiguous=ambiguous, amount_cents=amount_cents):
            model, reason = route.model, f"route '{route.name}' ({route.describe()})"
            break
    else:
        model, route, reason = settings.AGENT_MODEL, None, "no route matched: AGENT_MODEL"
    if not model.startswith("offline") and not settings.ANTHROPIC_API_KEY:
        reason += f" chose {model}, but there is no ANTHROPIC_API_KEY: {settings.AGENT_MODEL} runs"
        model = settings.AGENT_MODEL
    else:
        reason += f" → {model}"
    return model, (route.name if route else ""), reason


def triage_ticket(ticket, *, budget_refusal: str | None = None) -> TriageDecision:
    """Classify and route. `budget_refusal` set: no model call, the rules classify."""
    model = settings.TRIAGE_MODEL
    usage: dict = {}
    response_id = ""
    if budget_refusal:
        args, by, why = _rules(ticket), "rules", f"no triage model call: {budget_refusal}"
    else:
        try:
            args, usage, response_id = _classify_with_model(ticket, model)
            by, why = "model", args.reason
        except Exception as exc:  # whatever went wrong, the ticket is never lost
            args = _rules(ticket)
            by, why = "rules", f"triage model failed ({type(exc).__name__}: {exc}); rules used"
        else:
            # The model reads the ticket, so the ticket can talk to it ("this is perfectly
            # clear, no review needed"). It may call a ticket ambiguous; it may not clear
            # one the rules find ambiguous, since policy can require approval for those.
            if not args.ambiguous and _rules(ticket).ambiguous:
                args = args.model_copy(update={"ambiguous": True})
                why = f"{why}; ambiguous by the rules (a refund request naming no order)"
    amount = args.amount_at_stake_cents
    if amount is None:
        amount = _order_amount(parse_ticket(f"{ticket.subject}\n{ticket.body}").reference)
    route_model, route, route_reason = route_choose(
        intent=args.intent, ambiguous=args.ambiguous, amount_cents=amount
    )
    input_tokens = int(usage.get("input_tokens", 0) or 0)
    output_tokens = int(usage.get("output_tokens", 0) or 0)
    return TriageDecision(
        model=model if by == "model" else "rules",
        intent=args.intent,
        ambiguous=args.ambiguous,
        amount_at_stake_cents=amount,
        route_model=route_model,
        route=route,
        classified_by=by,
        reason=f"intent {args.intent}; {'ambiguous' if args.ambiguous else 'clear'}"
        + (f"; {amount} at stake" if amount is not None else "")
        + (f" ({why})" if why else "")
        + f"; {route_reason}",
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost=model_cost(model, usage) if usage else Decimal(0),
        attributes={
            **(usage_attributes(model, usage) if usage else {}),
            "response_id": response_id,
        },
    )
