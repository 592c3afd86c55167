"""Payment gateways behind one small interface; the simulated one is the default."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from django.conf import settings


@dataclass(frozen=True)
class GatewayRefund:
    refund_id: str
    payment_ref: str
    amount_cents: int
    currency: str
    idempotency_key: str | None
    metadata: dict
    created_at: datetime | None = None

    @property
    def ledger_key(self) -> str | None:
        """The ledger key this refund was made under (the key, or its copy in metadata)."""
        return self.idempotency_key or self.metadata.get("ledger_key")


class PaymentGateway(Protocol):
    name: str

    def refund(
        self,
        *,
        payment_ref: str,
        amount_cents: int,
        currency: str,
        idempotency_key: str,
        metadata: dict,
    ) -> GatewayRefund:
        """Create a refund. The same key and parameters return the same refund.

        Raises agentops.integrations.errors: ProviderTimeout (may have committed),
        RateLimited, ProviderUnavailable, ProviderRejected, IdempotencyConflict.
        """
        ...

    def find_refund(self, *, payment_ref: str, idempotency_key: str) -> GatewayRefund | None:
        """Ask the provider whether a refund with this key exists (for unknown outcomes)."""
        ...

    def list_refunds(
        self, *, payment_ref: str | None = None, since: datetime | None = None
    ) -> list[GatewayRefund]:
        """The provider's refunds, for one payment or all, created since a time (oldest first)."""
        ...


def get_payment_gateway() -> PaymentGateway:
    if settings.PAYMENTS_BACKEND == "simulated":
        from agentops.integrations.payments.simulated import SimulatedGateway

        return SimulatedGateway()
    if settings.PAYMENTS_BACKEND == "stripe":
        from agentops.integrations.payments.stripe_gateway import StripeGateway

        return StripeGateway()
    raise NotImplementedError(settings.PAYMENTS_BACKEND)
