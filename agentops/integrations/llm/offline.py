"""The offline model: deterministic, in-process, no key, Messages API shaped.

It behaves like a sensible refund agent on the demo tickets, and like the naive
agent of the seed story where the story needs it: it passes the first id-like
string it sees as the order id (so a pasted tracking number reaches validation)
and asks for whatever amount the ticket names (so an injected "$5000" reaches
validation and policy).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass

from django.conf import settings

from agentops.integrations.llm import ModelResponse
from agentops.money import money_format

_REFERENCE = re.compile(r"\b(ORD-\d{3,10}|1Z[0-9A-Z]{16})\b", re.IGNORECASE)
_REFUND_WORDS = re.compile(
    r"(?i)\b(refund|money back|reimburse|reimbursement|return it|send it back|charge back)\b"
)
_AMOUNT = re.compile(
    r"(?:([$€£])\s?(\d[\d,]*(?:\.\d{1,2})?))|(?:\b(\d[\d,]*(?:\.\d{1,2})?)\s?(USD|EUR|GBP)\b)"
)
_EMAIL_LINE = re.compile(r"^Ticket from:\s*(\S+)", re.MULTILINE)


@dataclass(frozen=True)
class ParsedTicket:
    reference: str | None
    wants_refund: bool
    amount_cents: int | None


def parse_ticket(text: str) -> ParsedTicket:
    """Read a ticket the way the offline agent does: first reference, intent, amount."""
    ref = _REFERENCE.search(text)
    amount = _AMOUNT.search(text)
    amount_cents = None
    if amount:
        raw = (amount.group(2) or amount.group(3)).replace(",", "")
        amount_cents = round(float(raw) * 100)
    return ParsedTicket(
        reference=ref.group(1).upper() if ref else None,
        wants_refund=bool(_REFUND_WORDS.search(text)),
        amount_cents=amount_cents,
    )


@dataclass
class _Call:
    name: str
    input: dict
    result: dict
    is_error: bool


class OfflineModel:
    name = "offline"

    def create(self, *, model, system, messages, tools, max_tokens) -> ModelResponse:
        if settings.OFFLINE_MODEL_LATENCY_MS:
            time.sleep(settings.OFFLINE_MODEL_LATENCY_MS / 1000)
        first = messages[0]["content"]
        first_text = first if isinstance(first, str) else json.dumps(first)
        email_match = _EMAIL_LINE.search(first_text)
        email = email_match.group(1) if email_match else ""
        parsed = parse_ticket(first_text)
        calls = _calls(messages)
        if [t.get("name") for t in tools] == ["record_triage"]:
            text, tool = _triage(parsed)
        else:
            text, tool = self._decide(parsed, email, calls)
        content: list[dict] = [{"type": "text", "text": text}]
        if tool is not None:
            name, tool_input = tool
            digest = hashlib.sha256(f"{len(calls)}:{name}:{first_text}".encode()).hexdigest()
            content.append(
                {
                    "type": "tool_use",
                    "id": f"toolu_{len(calls) + 1:02d}{digest[:20]}",
                    "name": name,
                    "input": tool_input,
                }
            )
        prompt_chars = len(system) + len(json.dumps(messages)) + len(json.dumps(tools))
        return ModelResponse(
            content=content,
            stop_reason="tool_use" if tool else "end_turn",
            model="offline",
            usage={
                "input_tokens": prompt_chars // 4,
                "output_tokens": len(json.dumps(content)) // 4,
            },
            id=f"msg_offline_{len(messages):03d}",
        )

    # --- the agent's judgement -------------------------------------------------

    def _decide(self, parsed: ParsedTicket, email: str, calls: list[_Call]):
        if not calls:
            if parsed.reference:
                return f"Let me look up {parsed.reference}.", (
                    "lookup_order",
                    {"order_id": parsed.reference},
                )
            if parsed.wants_refund:
                return "There is no order number; let me find the customer's orders.", (
                    "find_orders",
                    {"customer_email": email},
                )
            return "This is a general question; I can answer it directly.", _reply(
                "Thanks for getting in touch. I've passed your question on to our team, "
                "and you'll hear from us within one business day."
            )
        last = calls[-1]
        if last.name == "send_reply":
            if last.is_error:
                return "The reply could not be sent.", (
                    "escalate",
                    {"reason": f"send_reply failed: {last.result.get('message', '')}"},
                )
            unknown = [c for c in calls if c.name == "issue_refund" and _outcome_unknown(c)]
            if unknown:
                return "The refund's outcome is unknown; a person must confirm it.", (
                    "escalate",
                    {"reason": "Refund outcome unknown after retries; confirm with the provider."},
                )
            return "I've replied to the customer.", None
        if last.name == "find_orders":
            return self._after_find(parsed, last)
        if last.name == "lookup_order":
            return self._after_lookup(parsed, last)
        if last.name == "issue_refund":
            return self._after_refund(parsed, calls, last)
        return "Nothing more to do.", None

    def _after_find(self, parsed: ParsedTicket, call: _Call):
        orders = call.result.get("orders", []) if not call.is_error else []
        if len(orders) == 1:
            return self._refund(parsed, orders[0])
        if not orders:
            return "No orders for this customer.", _reply(
                "I couldn't find any orders under your email address. Could you send the order "
                "number (it looks like ORD-10023)?"
            )
        ids = ", ".join(o["order_id"] for o in orders)
        return "Several orders; ask which one.", _reply(
            f"I found several orders on your account ({ids}). Which one should the refund be for?"
        )

    def _after_lookup(self, parsed: ParsedTicket, call: _Call):
        reference = call.input.get("order_id", "")
        if call.is_error:
            return "The order was not found.", _reply(
                f"I couldn't find an order with the reference {reference}. Could you double-check "
                "the order number from your confirmation email (it looks like ORD-10023)?"
            )
        order = call.result
        if parsed.wants_refund:
            return self._refund(parsed, order)
        status = order["status"]
        when = (order.get("delivered_at") or "")[:10]
        detail = f", delivered on {when}" if status == "delivered" and when else ""
        return "Answer the question with the order's status.", _reply(
            f"Your order {order['order_id']} is {status}{detail}. "
            "Let us know if there is anything else we can help with."
        )

    def _refund(self, parsed: ParsedTicket, order: dict):
        amount = parsed.amount_cents or order["refundable_cents"] or order["total_cents"]
        return (
            f"The customer asks for a refund on {order['order_id']}; "
            f"I'll refund {money_format(cents=amount, currency=order['currency'])}.",
            (
                "issue_refund",
                {
                    "order_id": order["order_id"],
                    "amount_cents": amount,
                    "reason": "Customer request",
                },
            ),
        )

    def _after_refund(self, parsed: ParsedTicket, calls: list[_Call], call: _Call):
        order_id = call.input.get("order_id", "")
        if not call.is_error:
            amount = money_format(
                cents=call.result["amount_cents"], currency=call.result["currency"]
            )
            return "The refund went through.", _reply(
                f"I've issued a refund of {amount} for order {order_id}. It should reach your "
                "original payment method within 5-10 business days."
            )
        code = call.result.get("error", "")
        message = call.result.get("message", "")
        corrections = [c for c in calls if c.name == "issue_refund" and c.is_error]
        if code == "amount_exceeds_refundable" and len(corrections) == 1:
            lookup = next(
                (c for c in reversed(calls) if c.name == "lookup_order" and not c.is_error), None
            )
            refundable = lookup.result.get("refundable_cents") if lookup else None
            if refundable:
                return "That is more than the order allows; I'll refund what the order allows.", (
                    "issue_refund",
                    {
                        "order_id": order_id,
                        "amount_cents": refundable,
                        "reason": "Customer request",
                    },
                )
        if code == "rejected_by_person":
            return "A person rejected the refund; tell the customer honestly.", _reply(
                f"I'm sorry, but we're unable to issue a refund for order {order_id}. "
                "A member of our team reviewed the request. Reply to this email if you'd like "
                "to discuss it."
            )
        if code in {"already_refunded", "charge_already_refunded"}:
            return "It was already refunded.", _reply(
                f"Order {order_id} has already been refunded in full, so there is nothing more "
                "to refund. The money should already be on your original payment method."
            )
        if _outcome_unknown(call):
            return "The refund's outcome is unknown.", _reply(
                f"We're checking the status of your refund for order {order_id} with our payment "
                "provider and will confirm by email shortly."
            )
        return "The refund did not work; a person should look at it.", (
            "escalate",
            {"reason": f"issue_refund failed: {code}: {message}"[:480]},
        )


def _triage(parsed: ParsedTicket) -> tuple[str, tuple[str, dict]]:
    """The triage call: intent, ambiguity and amount, read the way the agent reads them."""
    intent = "refund" if parsed.wants_refund else "question"
    ambiguous = parsed.wants_refund and parsed.reference is None
    reason = f"reference {parsed.reference}" if parsed.reference else "no order reference"
    return "Triage.", (
        "record_triage",
        {
            "intent": intent,
            "ambiguous": ambiguous,
            "amount_at_stake_cents": parsed.amount_cents,
            "reason": reason,
        },
    )


def _reply(body: str) -> tuple[str, dict]:
    return ("send_reply", {"body": body})


def _outcome_unknown(call: _Call) -> bool:
    return call.is_error and "may or may not have happened" in call.result.get("message", "")


def _calls(messages: list[dict]) -> list[_Call]:
    """The tool calls so far with their results, in order."""
    uses: dict[str, dict] = {}
    order: list[str] = []
    results: dict[str, tuple[dict, bool]] = {}
    for message in messages:
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for block in content:
            if block.get("type") == "tool_use":
                uses[block["id"]] = block
                order.append(block["id"])
            elif block.get("type") == "tool_result":
                raw = block.get("content", "")
                try:
                    data = json.loads(raw) if isinstance(raw, str) else {"content": raw}
                except json.JSONDecodeError:
                    data = {"message": raw}
                results[block.get("tool_use_id")] = (data, bool(block.get("is_error")))
    calls = []
    for use_id in order:
        if use_id in results:
            data, is_error = results[use_id]
            calls.append(
                _Call(uses[use_id]["name"], uses[use_id].get("input") or {}, data, is_error)
            )
    return calls
