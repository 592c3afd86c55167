"""The demo shop seen through the OrderDirectory interface the agent's tools use.

It hands out frozen OrderInfo snapshots, never model instances, so nothing past
this module can save a shop row by accident and a real order API can replace it.
"""

from __future__ import annotations

from datetime import datetime

from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone

from agentops.integrations.orders import OrderInfo, RefundInfo
from agentops.shop.models import Customer, Order, Refund


def normalise_order_id(value: str) -> str:
    """`" ord-10023 "` → `"ORD-10023"`: customers and models type ids carelessly."""
    return value.strip().upper()


def normalise_tracking_number(value: str) -> str:
    """UPS-style numbers are printed in groups (`1Z 999 AA1 01 2345 6784`); store them bare."""
    return "".join(value.split()).upper()


# OrderInfo's fields and the columns they are read from.
_ORDER_FIELDS = {
    "order_id": "order_id",
    "customer_email": "customer__email",
    "customer_name": "customer__name",
    "total_cents": "total_cents",
    "currency": "currency",
    "status": "status",
    "placed_at": "placed_at",
    "delivered_at": "delivered_at",
    "tracking_number": "tracking_number",
    "payment_ref": "payment_ref",
}
_REFUND_COLUMNS = (
    "refunds__reference",
    "refunds__amount_cents",
    "refunds__created_at",
    "refunds__reason",
)


def _snapshots(orders: QuerySet[Order]) -> list[OrderInfo]:
    """Snapshots of these orders, newest first, with their refunds, oldest first.

    One query: the order, its customer and its refunds in a LEFT JOIN, a row per
    refund (or one row with no refund), rather than a query for the orders and
    another for the prefetch. Every tool call that names an order reads it this way.
    """
    rows = orders.values_list("pk", *_ORDER_FIELDS.values(), *_REFUND_COLUMNS).order_by(
        "-placed_at", "pk", "refunds__created_at", "refunds__pk"
    )
    found: dict[int, tuple[dict, list[RefundInfo]]] = {}
    width = len(_ORDER_FIELDS)
    for pk, *columns in rows:
        order = dict(zip(_ORDER_FIELDS, columns[:width], strict=True))
        _, refunds = found.setdefault(pk, (order, []))
        reference, amount_cents, created_at, reason = columns[width:]
        if reference is not None:
            refunds.append(
                RefundInfo(
                    reference=reference,
                    amount_cents=amount_cents,
                    created_at=created_at,
                    reason=reason,
                    order_id=order["order_id"],
                )
            )
    return [OrderInfo(**order, refunds=tuple(refunds)) for order, refunds in found.values()]


def _snapshot(orders: QuerySet[Order]) -> OrderInfo | None:
    found = _snapshots(orders)
    return found[0] if found else None


# Record a refund for the order with this order_id, unless the reference is already
# recorded. Raw SQL because the ORM has no INSERT ... SELECT ... ON CONFLICT; both
# SQLite (3.24+) and PostgreSQL accept it as written.
_RECORD_REFUND = f"""
    INSERT INTO {Refund._meta.db_table} (order_id, amount_cents, reference, reason, created_at)
    SELECT id, %s, %s, %s, %s FROM {Order._meta.db_table} WHERE order_id = %s
    ON CONFLICT (reference) DO NOTHING
"""  # noqa: S608 (table names from the models, values as parameters)


class OrderNotFound(LookupError):
    """Recording a refund for an order the shop does not know."""


class ShopOrderDirectory:
    """The embedded OrderDirectory, backed by agentops.shop's tables."""

    def get(self, order_id: str) -> OrderInfo | None:
        return _snapshot(Order.objects.filter(order_id=normalise_order_id(order_id)))

    def find_by_tracking_number(self, tracking_number: str) -> OrderInfo | None:
        number = normalise_tracking_number(tracking_number)
        if not number:
            return None
        return _snapshot(Order.objects.filter(tracking_number=number))

    def for_customer(self, email: str) -> list[OrderInfo]:
        # Email addresses are unique case-insensitively in practice, whatever the
        # customer typed in the ticket.
        customer = Customer.objects.filter(email__iexact=email.strip()).first()
        if customer is None:
            return []
        return _snapshots(Order.objects.filter(customer=customer))

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
        # One statement, atomic on its own: it inserts nothing when the order is
        # unknown or the reference is already recorded (the unique key decides,
        # also against a concurrent insert), and only then do we look closer.
        with connection.cursor() as cursor:
            cursor.execute(
                _RECORD_REFUND,
                [
                    amount_cents,
                    reference,
                    reason[:300],
                    connection.ops.adapt_datetimefield_value(timezone.now()),
                    normalise_order_id(order_id),
                ],
            )
            if cursor.rowcount == 1:
                return
        order = Order.objects.filter(order_id=normalise_order_id(order_id)).first()
        if order is None:
            raise OrderNotFound(f"no order {order_id!r}")
        refund = Refund.objects.select_related("order").get(reference=reference)
        if refund.order_id != order.pk or refund.amount_cents != amount_cents:
            raise ValueError(
                f"refund {reference} is already recorded as {refund.amount_cents} "
                f"on {refund.order.order_id}"
            )
