"""The one place that decides what an error is and whether it is retried.

Transient errors (timeouts, connection failures, 429, 5xx, an overloaded model)
are retried with bounded backoff; terminal ones (validation, not found, business
rules, other 4xx, an idempotency mismatch) never are.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentops.integrations.errors import (
    ProviderError,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)

TRANSIENT = "transient"
TERMINAL = "terminal"
VALIDATION = "validation"
POLICY = "policy"
BUDGET = "budget"


class ToolError(Exception):
    """A tool call that cannot run as asked: told to the model, never retried.

    `error_class` is validation (bad or unresolvable arguments) or terminal
    (a business rule); `code` is machine-readable, `message` is for the model.
    """

    def __init__(self, message: str, *, code: str, error_class: str = VALIDATION, details=None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.error_class = error_class
        self.details = details


class IdempotencyMismatch(ToolError):
    """The same idempotency key with other arguments: loud, terminal."""

    def __init__(self, key: str) -> None:
        super().__init__(
            f"This action was already taken for this ticket with different arguments "
            f"(idempotency key {key}); it will not be repeated with new ones.",
            code="idempotency_mismatch",
            error_class=TERMINAL,
        )


@dataclass(frozen=True)
class Classification:
    error_class: str
    retryable: bool
    # For a write: the provider may have committed, so the outcome is unknown.
    outcome_unknown: bool = False
    retry_after: float | None = None
    code: str = ""

    @property
    def transient(self) -> bool:
        return self.error_class == TRANSIENT


def classify(exc: BaseException) -> Classification:
    """Classify an exception raised by a model client, a tool or a gateway."""
    if isinstance(exc, ToolError):
        return Classification(exc.error_class, retryable=False, code=exc.code)
    if isinstance(exc, RateLimited):
        return Classification(TRANSIENT, True, retry_after=exc.retry_after, code="rate_limited")
    if isinstance(exc, ProviderTimeout):
        return Classification(
            TRANSIENT, True, outcome_unknown=exc.may_have_committed, code="timeout"
        )
    if isinstance(exc, ProviderUnavailable):
        return Classification(TRANSIENT, True, code=f"unavailable_{exc.status_code or 'conn'}")
    if isinstance(exc, ProviderRejected):
        return Classification(TERMINAL, False, code=exc.code)
    if isinstance(exc, ProviderError):
        return Classification(TERMINAL, False, code="provider_error")
    if isinstance(exc, (TimeoutError, ConnectionError)):
        # Raised by our own code paths that talk to the outside world directly.
        return Classification(TRANSIENT, True, outcome_unknown=True, code=type(exc).__name__)
    return Classification(TERMINAL, False, code=type(exc).__name__)
