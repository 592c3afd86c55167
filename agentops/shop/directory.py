"""The demo shop seen through the OrderDirectory interface the agent's tools use.

It hands out frozen OrderInfo snapshots, never model instances, so nothing past
this module can save a shop row by accident and a real order API can replace it.
"""

from __future__ import annotations

from datetime import datetime

from agentops.integrations.orders import OrderInfo, RefundInfo
from agentops.shop.models import Customer, Order, Refund


def normalise_order_id(value: str) -> str:
    """`" ord-10023 "` → `"ORD-10023"`: customers and models type ids carelessly."""
    return value.strip().upper()


def normalise_tracking_number(value: str) -> str:
    """UPS-style numbers are printed in groups (`1Z 999 AA1 01 2345 6784`); store them bare."""
    return "".join(value.split()).upper()


def order_info(order: Order) -> OrderInfo:
    """A frozen snapshot of an order and the refunds already made on it."""
    return OrderInfo(
        order_id=order.order_id,
        customer_email=order.customer.email,
        customer_name=order.customer.name,
        total_cents=order.total_cents,
        currency=order.currency,
        status=order.status,
        placed_at=order.placed_at,
        delivered_at=order.delivered_at,
        tracking_number=order.tracking_number,
        payment_ref=order.payment_ref,
        refunds=tuple(
            RefundInfo(
                reference=refund.reference,
                amount_cents=refund.amount_cents,
                created_at=refund.created_at,
                reason=refund.reason,
                order_id=order.order_id,
            )
            for refund in order.refunds.all()
        ),
    )


class OrderNotFound(LookupError):
    """Recording a refund for an order the shop does not know."""


class ShopOrderDirectory:
    """The embedded OrderDirectory, backed by agentops.shop's tables."""

    def _orders(self):
        return Order.objects.select_related("customer").prefetch_related("refunds")

    def get(self, order_id: str) -> OrderInfo | None:
        order = self._orders().filter(order_id=normalise_order_id(order_id)).first()
        return order_info(order) if order else None

    def find_by_tracking_number(self, tracking_number: str) -> OrderInfo | None:
        number = normalise_tracking_number(tracking_number)
        if not number:
            return None
        order = self._orders().filter(tracking_number=number).first()
        return order_info(order) if order else None

    def for_customer(self, email: str) -> list[OrderInfo]:
        # Email addresses are unique case-insensitively in practice, whatever the
        # customer typed in the ticket.
        customer = Customer.objects.filter(email__iexact=email.strip()).first()
        if customer is None:
            return []
        return [order_info(order) for order in self._orders().filter(customer=customer)]

    def refunds_for_customer(self, email: str, *, since: datetime) -> list[RefundInfo]:
        refunds = (
            Refund.objects.filter(
                order__customer__email__iexact=email.strip(), created_at__gte=since
            )
            .select_related("order")
            .order_by("created_at", "pk")
        )
        return [
            RefundInfo(
                reference=refund.reference,
                amount_cents=refund.amount_cents,
                created_at=refund.created_at,
                reason=refund.reason,
                order_id=refund.order.order_id,
            )
            for refund in refunds
        ]

    def record_refund(
        self, *, order_id: str, amount_cents: int, reference: str, reason: str
    ) -> None:
        """Note a refund the payment provider made. Idempotent on `reference`.

        Raises OrderNotFound for an unknown order and ValueError when the same
        reference is already recorded for another order or amount: that is a
        bookkeeping error worth stopping for, not something to paper over.
        """
        if amount_cents <= 0:
            raise ValueError(f"refund amount must be positive, got {amount_cents}")
        order = Order.objects.filter(order_id=normalise_order_id(order_id)).first()
        if order is None:
            raise OrderNotFound(f"no order {order_id!r}")
        # get_or_create retries the read when a concurrent insert wins the unique key.
        refund, created = Refund.objects.get_or_create(
            reference=reference,
            defaults={"order": order, "amount_cents": amount_cents, "reason": reason[:300]},
        )
        if not created and (refund.order_id != order.pk or refund.amount_cents != amount_cents):
            raise ValueError(
                f"refund {reference} is already recorded as {refund.amount_cents} "
                f"on {refund.order.order_id}"
            )
