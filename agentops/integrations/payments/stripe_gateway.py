"""Stripe, through the official SDK (PAYMENTS_BACKEND=stripe, STRIPE_API_KEY).

- Refunds are created against the order's payment reference (a PaymentIntent
  `pi_…`, or a Charge `ch_…`) with `idempotency_key` = the ledger key, and
  metadata naming the ticket, the order, the run and the ledger key itself.
- The SDK's own retries are off (max_network_retries=0); timeouts are explicit;
  the API base (STRIPE_API_BASE) may point at a proxy or a local fake.
- Errors become agentops.integrations.errors, classified like every other
  provider's: rate limits, connection failures and timeouts (the refund may have
  been made: outcome unknown) and 5xx are transient; card and invalid requests
  are terminal with Stripe's code (see payments.codes for what each means); an
  idempotency error (same key, other parameters) is terminal and loud.
- An unknown outcome is resolved by listing the payment's refunds and matching
  the ledger key in their metadata (Stripe does not expose idempotency keys).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import stripe
from django.conf import settings

from agentops.integrations.errors import (
    IdempotencyConflict,
    ProviderError,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from agentops.integrations.payments import GatewayRefund
from agentops.integrations.payments.codes import TRANSIENT, provider_code

logger = logging.getLogger(__name__)

PROVIDER = "stripe"
LEDGER_KEY = "ledger_key"
PAGE_SIZE = 100


def _payment_param(payment_ref: str) -> dict:
    return (
        {"charge": payment_ref}
        if payment_ref.startswith("ch_")
        else {"payment_intent": payment_ref}
    )


def _as_refund(obj) -> GatewayRefund:
    obj = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    metadata = dict(obj.get("metadata") or {})
    created = obj.get("created")
    return GatewayRefund(
        refund_id=obj["id"],
        payment_ref=obj.get("payment_intent") or obj.get("charge") or "",
        amount_cents=int(obj["amount"]),
        currency=str(obj.get("currency", "")).upper(),
        idempotency_key=metadata.get(LEDGER_KEY),
        metadata=metadata,
        created_at=datetime.fromtimestamp(created, tz=UTC) if created else None,
    )


def map_error(exc: stripe.StripeError) -> ProviderError:
    """One Stripe exception as the runtime's classification expects it."""
    message = f"{type(exc).__name__}: {exc.user_message or exc._message or exc}"
    code = exc.code or ""
    status = exc.http_status
    if isinstance(exc, stripe.IdempotencyError):
        # Same key, other parameters: our own bug or a hand-made refund. Never quiet.
        logger.error("stripe idempotency error (request %s): %s", exc.request_id, message)
        return IdempotencyConflict(message, provider=PROVIDER)
    if isinstance(exc, stripe.RateLimitError):
        retry_after = (exc.headers or {}).get("Retry-After")
        try:
            seconds = float(retry_after) if retry_after is not None else None
        except ValueError:
            seconds = None
        return RateLimited(message, provider=PROVIDER, retry_after=seconds)
    if isinstance(exc, stripe.APIConnectionError):
        # No answer: Stripe may have made the refund. The same key is safe to retry.
        return ProviderTimeout(message, provider=PROVIDER, may_have_committed=True)
    if isinstance(exc, stripe.AuthenticationError):
        return ProviderRejected(message, provider=PROVIDER, code="authentication_failed")
    if isinstance(exc, stripe.PermissionError):
        return ProviderRejected(message, provider=PROVIDER, code="permission_denied")
    entry = provider_code(code)
    if (status is not None and status >= 500) or (entry and entry.error_class == TRANSIENT):
        return ProviderUnavailable(message, provider=PROVIDER, status_code=status or 500)
    return ProviderRejected(message, provider=PROVIDER, code=code or "invalid_request")


class StripeGateway:
    name = PROVIDER

    def __init__(self) -> None:
        self._client = stripe.StripeClient(
            settings.STRIPE_API_KEY,
            base_addresses={"api": settings.STRIPE_API_BASE},
            max_network_retries=0,
            http_client=stripe.RequestsClient(timeout=settings.STRIPE_TIMEOUT_SECONDS),
        )

    def refund(
        self,
        *,
        payment_ref: str,
        amount_cents: int,
        currency: str,
        idempotency_key: str,
        metadata: dict,
    ) -> GatewayRefund:
        params = {
            **_payment_param(payment_ref),
            "amount": amount_cents,
            "metadata": {**metadata, LEDGER_KEY: idempotency_key},
        }
        try:
            obj = self._client.v1.refunds.create(
                params=params, options={"idempotency_key": idempotency_key}
            )
        except stripe.StripeError as exc:
            raise map_error(exc) from exc
        refund = _as_refund(obj)
        if refund.currency and refund.currency != currency.upper():
            # Stripe refunds in the payment's currency; a mismatch means our order is wrong.
            raise ProviderRejected(
                f"refund {refund.refund_id} is in {refund.currency}, the order in {currency}",
                provider=PROVIDER,
                code="currency_mismatch",
            )
        return refund

    def find_refund(self, *, payment_ref: str, idempotency_key: str) -> GatewayRefund | None:
        for refund in self.list_refunds(payment_ref=payment_ref):
            if refund.metadata.get(LEDGER_KEY) == idempotency_key:
                return refund
        return None

    def list_refunds(
        self, *, payment_ref: str | None = None, since: datetime | None = None
    ) -> list[GatewayRefund]:
        params: dict = {"limit": PAGE_SIZE}
        if payment_ref:
            params.update(_payment_param(payment_ref))
        if since is not None:
            params["created"] = {"gte": int(since.timestamp())}
        try:
            page = self._client.v1.refunds.list(params=params)
            refunds = [_as_refund(obj) for obj in page.auto_paging_iter()]
        except stripe.StripeError as exc:
            raise map_error(exc) from exc
        return sorted(refunds, key=lambda r: r.created_at or datetime.min.replace(tzinfo=UTC))
