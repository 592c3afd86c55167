"""What can go wrong outside, in the outside world's own terms.

Integrations raise these; agentops.runtime.errors is the one place that
decides which are retried (transient) and which never are (terminal).
"""


class ProviderError(Exception):
    """Base for every failure of a model provider, order system or payment gateway."""

    def __init__(self, message: str = "", *, provider: str = "") -> None:
        super().__init__(message or self.__class__.__name__)
        self.message = message or self.__class__.__name__
        self.provider = provider


class ProviderTimeout(ProviderError):
    """No answer in time. For a write, the provider may have committed it."""

    def __init__(self, message: str = "", *, provider: str = "", may_have_committed: bool = True):
        super().__init__(message, provider=provider)
        self.may_have_committed = may_have_committed


class ProviderUnavailable(ProviderError):
    """Connection refused or reset, 5xx, overloaded: nothing was committed."""

    def __init__(self, message: str = "", *, provider: str = "", status_code: int | None = None):
        super().__init__(message, provider=provider)
        self.status_code = status_code


class RateLimited(ProviderError):
    """429: try again, after Retry-After seconds if the provider said."""

    def __init__(self, message: str = "", *, provider: str = "", retry_after: float | None = None):
        super().__init__(message, provider=provider)
        self.retry_after = retry_after


class ProviderRejected(ProviderError):
    """A 4xx or business rule: the same request will never succeed.

    `code` is the provider's machine-readable reason (e.g. charge_already_refunded).
    """

    def __init__(self, message: str = "", *, provider: str = "", code: str = "rejected"):
        super().__init__(message, provider=provider)
        self.code = code


class IdempotencyConflict(ProviderRejected):
    """The same idempotency key was used with other parameters."""

    def __init__(self, message: str = "", *, provider: str = ""):
        super().__init__(message, provider=provider, code="idempotency_key_reused")
