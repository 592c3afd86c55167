"""The order system as the agent's tools see it.

The tools reach orders only through `get_order_directory()`; the demo shop is
the embedded implementation, and a real order API can replace it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class RefundInfo:
    reference: str
    amount_cents: int
    created_at: datetime
    reason: str = ""
    order_id: str = ""


@dataclass(frozen=True)
class OrderInfo:
    order_id: str
    customer_email: str
    customer_name: str
    total_cents: int
    currency: str
    status: str  # placed / shipped / delivered / cancelled
    placed_at: datetime
    delivered_at: datetime | None
    tracking_number: str | None
    payment_ref: str
    refunds: tuple[RefundInfo, ...] = field(default_factory=tuple)

    @property
    def refunded_cents(self) -> int:
        return sum(r.amount_cents for r in self.refunds)

    @property
    def refundable_cents(self) -> int:
        return max(self.total_cents - self.refunded_cents, 0)

    def as_dict(self) -> dict:
        """What a tool hands back to the model (JSON-safe)."""
        return {
            "order_id": self.order_id,
            "customer_email": self.customer_email,
            "customer_name": self.customer_name,
            "total_cents": self.total_cents,
            "currency": self.currency,
            "status": self.status,
            "placed_at": self.placed_at.isoformat(),
            "delivered_at": self.delivered_at.isoformat() if self.delivered_at else None,
            "tracking_number": self.tracking_number,
            "refunded_cents": self.refunded_cents,
            "refundable_cents": self.refundable_cents,
        }


class OrderDirectory(Protocol):
    def get(self, order_id: str) -> OrderInfo | None: ...

    def find_by_tracking_number(self, tracking_number: str) -> OrderInfo | None: ...

    def for_customer(self, email: str) -> list[OrderInfo]: ...

    def refunds_for_customer(self, email: str, *, since: datetime) -> list[RefundInfo]:
        """Every refund on the customer's orders made at or after `since`, oldest first."""
        ...

    def record_refund(
        self, *, order_id: str, amount_cents: int, reference: str, reason: str
    ) -> None:
        """Note a refund the payment provider made. Idempotent on `reference`."""
        ...


def get_order_directory() -> OrderDirectory:
    from agentops.shop.directory import ShopOrderDirectory

    return ShopOrderDirectory()
