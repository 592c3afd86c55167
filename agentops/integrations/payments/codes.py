"""The payment providers' error codes, in one table: class and what it means.

Both gateways (simulated and Stripe) raise ProviderRejected with the provider's
code; the runtime tells the model the meaning, never a stack trace. Codes are
Stripe's (https://docs.stripe.com/error-codes); the simulated gateway uses the
same ones. A code that is not here is terminal and is told as the provider's
message.
"""

from __future__ import annotations

from dataclasses import dataclass

TRANSIENT = "transient"
TERMINAL = "terminal"


@dataclass(frozen=True)
class ProviderCode:
    error_class: str
    meaning: str
    needs_person: bool = False


PROVIDER_CODES: dict[str, ProviderCode] = {
    "charge_already_refunded": ProviderCode(
        TERMINAL,
        "The payment was already refunded in full; the customer already has their money "
        "back. Tell the customer so; do not refund again.",
    ),
    "amount_too_large": ProviderCode(
        TERMINAL,
        "The amount is more than the payment can refund; a person must look at it.",
        needs_person=True,
    ),
    "resource_missing": ProviderCode(
        TERMINAL,
        "The payment provider does not know this payment; a person must look at it.",
        needs_person=True,
    ),
    "idempotency_key_reused": ProviderCode(
        TERMINAL,
        "This refund was already requested with other parameters; it was not repeated. "
        "A person must look at it.",
        needs_person=True,
    ),
    "charge_disputed": ProviderCode(
        TERMINAL,
        "The payment is disputed (a chargeback); it cannot be refunded here, a person "
        "must handle the dispute.",
        needs_person=True,
    ),
    "balance_insufficient": ProviderCode(
        TERMINAL,
        "The shop's balance cannot cover this refund right now; a person must look at it.",
        needs_person=True,
    ),
    "currency_mismatch": ProviderCode(
        TERMINAL,
        "The refund's currency is not the payment's; a person must look at it.",
        needs_person=True,
    ),
    "invalid_amount": ProviderCode(TERMINAL, "The refund amount is not valid."),
    "parameter_invalid_integer": ProviderCode(TERMINAL, "The refund amount is not valid."),
    "authentication_failed": ProviderCode(
        TERMINAL,
        "The payment provider refused our credentials; nothing was refunded. A person "
        "must fix the configuration.",
        needs_person=True,
    ),
    "permission_denied": ProviderCode(
        TERMINAL,
        "Our payment account may not make this refund; a person must look at it.",
        needs_person=True,
    ),
    # Stripe's lock_timeout: another request on the same object was in progress.
    "lock_timeout": ProviderCode(TRANSIENT, "The payment was busy; the refund is retried."),
}


def provider_code(code: str) -> ProviderCode | None:
    return PROVIDER_CODES.get(code)


def customer_meaning(code: str, message: str) -> str:
    """What the model is told about a terminal provider error."""
    entry = PROVIDER_CODES.get(code)
    if entry is None:
        return f"The action failed and will not be retried: {message}"
    return f"{entry.meaning} ({code})"
