"""The agent's tools, registered by name in one place.

Each tool is a pydantic schema (what the model must send), a resolver (the
arguments checked against real data: does the order exist, is that a tracking
number), an executor, and for side effects the idempotency key and a way to ask
the provider what happened when an outcome is unknown.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

from django.core.mail import EmailMessage
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints

from agentops.integrations.orders import OrderDirectory, OrderInfo, get_order_directory
from agentops.integrations.payments import PaymentGateway, get_payment_gateway
from agentops.runtime.errors import TERMINAL, VALIDATION, ToolError

ORDER_ID_RE = re.compile(r"^ORD-\d{3,10}$")
TRACKING_RE = re.compile(r"^1Z[0-9A-Z]{16}$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class LookupOrderArgs(_Args):
    order_id: Annotated[Text, StringConstraints(max_length=64)] = Field(
        description="The order id, like ORD-10023."
    )


class FindOrdersArgs(_Args):
    customer_email: Annotated[Text, StringConstraints(max_length=254, pattern=EMAIL_RE.pattern)] = (
        Field(description="The customer's email address.")
    )


class IssueRefundArgs(_Args):
    order_id: Annotated[Text, StringConstraints(max_length=64)] = Field(
        description="The order id, like ORD-10023."
    )
    amount_cents: StrictInt = Field(
        gt=0, le=100_000_000, description="Amount to refund in minor units (cents)."
    )
    reason: Annotated[Text, StringConstraints(max_length=300)] = Field(
        description="Why the refund is given, in a few words."
    )


class SendReplyArgs(_Args):
    body: Annotated[Text, StringConstraints(max_length=5000)] = Field(
        description="The reply to the customer, plain text."
    )


class EscalateArgs(_Args):
    reason: Annotated[Text, StringConstraints(max_length=500)] = Field(
        description="Why a person must take over."
    )


@dataclass
class ToolContext:
    run: object  # agentops.models.Run; typed loosely so tools stay testable alone
    ticket: object
    orders: OrderDirectory
    gateway: PaymentGateway

    @classmethod
    def for_run(cls, run) -> ToolContext:
        return cls(
            run=run, ticket=run.ticket, orders=get_order_directory(), gateway=get_payment_gateway()
        )


@dataclass
class Resolved:
    """Arguments after validation and resolution: what runs, and what the ledger keeps."""

    args: dict
    notes: list[str] = field(default_factory=list)
    amount_cents: int | None = None
    currency: str = ""
    order: OrderInfo | None = None


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    schema: type[BaseModel]
    resolve: Callable[[BaseModel, ToolContext], Resolved]
    execute: Callable[[Resolved, ToolContext, str | None], dict]
    # Business rules on the resolved arguments (e.g. not more than is refundable).
    # Skipped when the ledger already holds this effect: then the ledger decides,
    # since the effect itself may be why the rule would now fail.
    check: Callable[[Resolved, ToolContext], None] | None = None
    side_effect: bool = False
    idempotency_key: Callable[[Resolved, ToolContext], str] | None = None
    # Ask the provider whether an effect with this key happened; None if not found.
    recover: Callable[[Resolved, ToolContext, str], dict | None] | None = None
    is_reply: bool = False
    ends_run: bool = False
    # The outside service the executor calls, for its circuit breaker ("payments:stripe").
    downstream: Callable[[ToolContext], str] | None = None

    def definition(self, description: str | None = None) -> dict:
        """The tool as the Messages API expects it (with another description, if given)."""
        return {
            "name": self.name,
            "description": description or self.description,
            "input_schema": _input_schema(self.schema),
        }


@functools.cache
def _input_schema(schema: type[BaseModel]) -> dict:
    # A schema class does not change while the process runs; building its JSON
    # schema took pydantic ~0.3 ms, five tools at every model call.
    built = schema.model_json_schema()
    built.pop("title", None)
    return built


# --- resolution helpers ------------------------------------------------------


def _resolve_order(raw: str, ctx: ToolContext) -> tuple[OrderInfo, list[str]]:
    value = raw.strip().upper()
    order = ctx.orders.get(value) if ORDER_ID_RE.match(value) else None
    notes: list[str] = []
    if order is None and TRACKING_RE.match(value):
        order = ctx.orders.find_by_tracking_number(value)
        if order is not None:
            notes.append(
                f"'{raw}' is a tracking number, not an order id; "
                f"it belongs to order {order.order_id}."
            )
    if order is None:
        kind = "tracking number" if TRACKING_RE.match(value) else "order id"
        raise ToolError(
            f"No order found for {kind} '{raw}'. Order ids look like ORD-10023. "
            "Ask the customer for the order id, or call find_orders with their email.",
            code="order_not_found",
            error_class=VALIDATION,
        )
    return order, notes


def _same_customer(order: OrderInfo, ctx: ToolContext) -> None:
    if order.customer_email.lower() != ctx.ticket.customer_email.lower():
        raise ToolError(
            f"Order {order.order_id} does not belong to the customer who wrote this ticket; "
            "no action can be taken on it for them.",
            code="order_of_another_customer",
            error_class=TERMINAL,
        )


# --- the tools ---------------------------------------------------------------


def _lookup_resolve(args: LookupOrderArgs, ctx: ToolContext) -> Resolved:
    order, notes = _resolve_order(args.order_id, ctx)
    # An order holds its customer's name, email and address of delivery: not for others.
    _same_customer(order, ctx)
    return Resolved(args={"order_id": order.order_id}, notes=notes, order=order)


def _lookup_execute(resolved: Resolved, ctx: ToolContext, key: str | None) -> dict:
    order = resolved.order
    data = order.as_dict()
    data["refunds"] = [
        {"amount_cents": r.amount_cents, "created_at": r.created_at.isoformat(), "reason": r.reason}
        for r in order.refunds
    ]
    if resolved.notes:
        data["note"] = " ".join(resolved.notes)
    return data


def _find_resolve(args: FindOrdersArgs, ctx: ToolContext) -> Resolved:
    email = args.customer_email.lower()
    if email != ctx.ticket.customer_email.lower():
        raise ToolError(
            "Only the orders of the customer who wrote this ticket can be listed "
            f"({ctx.ticket.customer_email}).",
            code="orders_of_another_customer",
            error_class=TERMINAL,
        )
    return Resolved(args={"customer_email": email})


def _find_execute(resolved: Resolved, ctx: ToolContext, key: str | None) -> dict:
    orders = ctx.orders.for_customer(resolved.args["customer_email"])
    return {"orders": [o.as_dict() for o in orders], "count": len(orders)}


def _refund_resolve(args: IssueRefundArgs, ctx: ToolContext) -> Resolved:
    order, notes = _resolve_order(args.order_id, ctx)
    _same_customer(order, ctx)
    return Resolved(
        args={
            "order_id": order.order_id,
            "amount_cents": args.amount_cents,
            "currency": order.currency,
            "reason": args.reason,
        },
        notes=notes,
        amount_cents=args.amount_cents,
        currency=order.currency,
        order=order,
    )


def _refund_check(resolved: Resolved, ctx: ToolContext) -> None:
    order = resolved.order
    amount = resolved.args["amount_cents"]
    if order.refundable_cents == 0:
        raise ToolError(
            f"Order {order.order_id} was already refunded in full "
            f"({order.refunded_cents} {order.currency}). Do not refund again; tell the customer.",
            code="already_refunded",
            error_class=TERMINAL,
        )
    if amount > order.refundable_cents:
        raise ToolError(
            f"amount_cents {amount} is more than can be refunded on {order.order_id}: "
            f"at most {order.refundable_cents} {order.currency} "
            f"(total {order.total_cents}, already refunded {order.refunded_cents}).",
            code="amount_exceeds_refundable",
            error_class=VALIDATION,
        )


def _refund_key(resolved: Resolved, ctx: ToolContext) -> str:
    # One refund per ticket and order, whatever the amount: a second proposal with
    # another amount is an idempotency mismatch, not a second payment.
    return f"refund:{ctx.ticket.code}:{resolved.args['order_id']}"


def _refund_result(refund, resolved: Resolved) -> dict:
    return {
        "status": "succeeded",
        "refund_id": refund.refund_id,
        "order_id": resolved.args["order_id"],
        "amount_cents": refund.amount_cents,
        "currency": refund.currency,
    }


def _record_in_shop(refund, resolved: Resolved, ctx: ToolContext) -> None:
    ctx.orders.record_refund(
        order_id=resolved.args["order_id"],
        amount_cents=refund.amount_cents,
        reference=refund.refund_id,
        reason=resolved.args["reason"],
    )


def _refund_execute(resolved: Resolved, ctx: ToolContext, key: str | None) -> dict:
    refund = ctx.gateway.refund(
        payment_ref=resolved.order.payment_ref,
        amount_cents=resolved.args["amount_cents"],
        currency=resolved.args["currency"],
        idempotency_key=key,
        metadata={
            "ticket": str(ctx.ticket.code),
            "order": resolved.args["order_id"],
            "run": str(ctx.run.code),
        },
    )
    _record_in_shop(refund, resolved, ctx)
    return _refund_result(refund, resolved)


def _refund_recover(resolved: Resolved, ctx: ToolContext, key: str) -> dict | None:
    refund = ctx.gateway.find_refund(payment_ref=resolved.order.payment_ref, idempotency_key=key)
    if refund is None:
        return None
    _record_in_shop(refund, resolved, ctx)
    return _refund_result(refund, resolved)


def _reply_resolve(args: SendReplyArgs, ctx: ToolContext) -> Resolved:
    return Resolved(args={"body": args.body})


def _reply_key(resolved: Resolved, ctx: ToolContext) -> str:
    return f"reply:{ctx.ticket.code}"


def _reply_execute(resolved: Resolved, ctx: ToolContext, key: str | None) -> dict:
    ticket = ctx.ticket
    message = EmailMessage(
        subject=f"Re: {ticket.subject}",
        body=resolved.args["body"],
        to=[ticket.customer_email],
        headers={"X-Agentops-Key": key or ""},
    )
    message.send(fail_silently=False)
    return {"status": "sent", "to": ticket.customer_email}


def _escalate_resolve(args: EscalateArgs, ctx: ToolContext) -> Resolved:
    return Resolved(args={"reason": args.reason})


def _escalate_execute(resolved: Resolved, ctx: ToolContext, key: str | None) -> dict:
    return {"status": "escalated", "reason": resolved.args["reason"]}


TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in [
        Tool(
            name="lookup_order",
            description="Look up one order by its id: status, total, dates, refunds so far.",
            schema=LookupOrderArgs,
            resolve=_lookup_resolve,
            execute=_lookup_execute,
        ),
        Tool(
            name="find_orders",
            description="List the orders of a customer by email.",
            schema=FindOrdersArgs,
            resolve=_find_resolve,
            execute=_find_execute,
        ),
        Tool(
            name="issue_refund",
            description=(
                "Refund an amount on an order to the customer's original payment method. "
                "Large refunds wait for a person's approval."
            ),
            schema=IssueRefundArgs,
            resolve=_refund_resolve,
            check=_refund_check,
            execute=_refund_execute,
            side_effect=True,
            idempotency_key=_refund_key,
            recover=_refund_recover,
            downstream=lambda ctx: f"payments:{ctx.gateway.name}",
        ),
        Tool(
            name="send_reply",
            description="Send the reply to the customer. Say only what really happened.",
            schema=SendReplyArgs,
            resolve=_reply_resolve,
            execute=_reply_execute,
            side_effect=True,
            idempotency_key=_reply_key,
            is_reply=True,
        ),
        Tool(
            name="escalate",
            description="Hand the ticket to a person, with the reason. Ends your work on it.",
            schema=EscalateArgs,
            resolve=_escalate_resolve,
            execute=_escalate_execute,
            ends_run=True,
        ),
    ]
}


def tool_definitions(descriptions: dict[str, str] | None = None) -> list[dict]:
    """Every tool for the model; `descriptions` (a prompt version's) replace built-in ones."""
    descriptions = descriptions or {}
    return [tool.definition(descriptions.get(tool.name)) for tool in TOOLS.values()]


def canonical_json(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
