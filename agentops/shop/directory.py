"""The demo shop seen through the OrderDirectory interface the agent's tools use.

It hands out frozen OrderInfo snapshots, never model instances, so nothing past
this module can save a shop row by accident and a real order API can replace it.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import connection
from django.utils import timezone

from agentops.db.batch import query
from agentops.integrations.orders import OrderInfo, RefundInfo
from agentops.shop.models import Customer, Order, Refund


def normalise_order_id(value: str) -> str:
    """`" ord-10023 "` → `"ORD-10023"`: customers and models type ids carelessly."""
    return value.strip().upper()


def normalise_tracking_number(value: str) -> str:
    """UPS-style numbers are printed in groups (`1Z 999 AA1 01 2345 6784`); store them bare."""
    return "".join(value.split()).upper()


# The order, its customer and its refunds in one LEFT JOIN: a row per refund, or
# one row with no refund. Every tool call that names an order reads it this way,
# so it is written out once rather than built by the ORM at each call (~0.4 ms of
# query compiling each time); {where} is one of the fixed conditions below.
_SNAPSHOTS = f"""
    SELECT o.id, o.order_id, c.email, c.name, o.total_cents, o.currency, o.status,
           o.placed_at, o.delivered_at, o.tracking_number, o.payment_ref,
           r.reference, r.amount_cents, r.created_at, r.reason
    FROM {Order._meta.db_table} o
    JOIN {Customer._meta.db_table} c ON c.id = o.customer_id
    LEFT JOIN {Refund._meta.db_table} r ON r.order_id = o.id
    WHERE {{where}}
    ORDER BY o.placed_at DESC, o.id, r.created_at, r.id
"""  # noqa: S608 (table names from the models, values as parameters)
_BY_ORDER_ID = _SNAPSHOTS.format(where="o.order_id = %s")
_BY_TRACKING_NUMBER = _SNAPSHOTS.format(where="o.tracking_number = %s")
_BY_CUSTOMER = _SNAPSHOTS.format(where="o.customer_id = %s")


def _aware(value: datetime | None) -> datetime | None:
    """What the ORM's converters do: SQLite hands back naive datetimes (in UTC)."""
    if value is not None and settings.USE_TZ and timezone.is_naive(value):
        return timezone.make_aware(value, connection.timezone)
    return value


def _snapshots(sql: str, param: object) -> list[OrderInfo]:
    """Snapshots of the orders the query selects, newest first, with their refunds, oldest first."""
    rows = query(sql, [param])
    found: dict[int, tuple[tuple, list[RefundInfo]]] = {}
    for pk, *order, reference, amount_cents, created_at, reason in rows:
        _, refunds = found.setdefault(pk, (order, []))
        if reference is not None:
            refunds.append(
                RefundInfo(
                    reference=reference,
                    amount_cents=amount_cents,
                    created_at=_aware(created_at),
                    reason=reason,
                    order_id=order[0],
                )
            )
    return [
        OrderInfo(
            order_id=order_id,
            customer_email=email,
            customer_name=name,
            total_cents=total_cents,
            currency=currency,
            status=status,
            placed_at=_aware(placed_at),
            delivered_at=_aware(delivered_at),
            tracking_number=tracking_number,
            payment_ref=payment_ref,
            refunds=tuple(refunds),
        )
        for (
            order_id,
            email,
            name,
            total_cents,
            currency,
            status,
            placed_at,
            delivered_at,
            tracking_number,
            payment_ref,
        ), refunds in found.values()
    ]


def _snapshot(sql: str, param: object) -> OrderInfo | None:
    found = _snapshots(sql, param)
    return found[0] if found else None


# Record a refund for the order with this order_id, unless the reference is already
# recorded. Raw SQL because the ORM has no INSERT ... SELECT ... ON CONFLICT; both
# SQLite (3.24+) and PostgreSQL accept it as written.
_RECORD_REFUND = f"""
    INSERT INTO {Refund._meta.db_table} (order_id, amount_cents, reference, reason, created_at)
    SELECT id, %s, %s, %s, %s FROM {Order._meta.db_table} WHERE order_id = %s
    ON CONFLICT (reference) DO NOTHING
    RETURNING id
"""  # noqa: S608 (table names from the models, values as parameters)


class OrderNotFound(LookupError):
    """Recording a refund for an order the shop does not know."""


class ShopOrderDirectory:
    """The embedded OrderDirectory, backed by agentops.shop's tables."""

    def get(self, order_id: str) -> OrderInfo | None:
        return _snapshot(_BY_ORDER_ID, normalise_order_id(order_id))

    def find_by_tracking_number(self, tracking_number: str) -> OrderInfo | None:
        number = normalise_tracking_number(tracking_number)
        if not number:
            return None
        return _snapshot(_BY_TRACKING_NUMBER, number)

    def for_customer(self, email: str) -> list[OrderInfo]:
        # Email addresses are unique case-insensitively in practice, whatever the
        # customer typed in the ticket.
        customer = Customer.objects.filter(email__iexact=email.strip()).first()
        if customer is None:
            return []
        return _snapshots(_BY_CUSTOMER, customer.pk)

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
        recorded = query(
            _RECORD_REFUND,
            [
                amount_cents,
                reference,
                reason[:300],
                connection.ops.adapt_datetimefield_value(timezone.now()),
                normalise_order_id(order_id),
            ],
        )
        if recorded:
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
