"""Classification of errors and the bounded backoff."""

import pytest

from agentops.integrations.errors import (
    IdempotencyConflict,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from agentops.runtime.errors import TERMINAL, TRANSIENT, VALIDATION, ToolError, classify
from agentops.runtime.retry import backoff_delay


@pytest.mark.parametrize(
    ("exc", "error_class", "retryable", "unknown"),
    [
        (ProviderTimeout("t"), TRANSIENT, True, True),
        (ProviderTimeout("t", may_have_committed=False), TRANSIENT, True, False),
        (ProviderUnavailable("503", status_code=503), TRANSIENT, True, False),
        (ProviderUnavailable("overloaded", status_code=529), TRANSIENT, True, False),
        (RateLimited("429", retry_after=3), TRANSIENT, True, False),
        (ConnectionResetError("reset"), TRANSIENT, True, True),
        (ProviderRejected("no", code="charge_already_refunded"), TERMINAL, False, False),
        (IdempotencyConflict("other params"), TERMINAL, False, False),
        (ToolError("bad", code="x"), VALIDATION, False, False),
        (ToolError("rule", code="y", error_class=TERMINAL), TERMINAL, False, False),
        (KeyError("bug"), TERMINAL, False, False),
    ],
)
def test_each_error_is_classified_once(exc, error_class, retryable, unknown):
    c = classify(exc)
    assert (c.error_class, c.retryable, c.outcome_unknown) == (error_class, retryable, unknown)


def test_rate_limits_carry_the_providers_retry_after():
    assert classify(RateLimited("429", retry_after=2.5)).retry_after == 2.5
    assert classify(IdempotencyConflict("x")).code == "idempotency_key_reused"


def test_backoff_is_full_jitter_under_an_exponential_ceiling(settings):
    settings.RETRY_BASE_DELAY_SECONDS = 0.5
    settings.RETRY_MAX_DELAY_SECONDS = 3.0
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (10, 3.0)]:
        delays = [backoff_delay(attempt) for _ in range(300)]
        assert all(0 <= d <= ceiling for d in delays)
        # Jitter spreads the delays; it does not always wait the ceiling.
        assert max(delays) > ceiling * 0.8 and min(delays) < ceiling * 0.2


def test_retry_after_is_honoured_but_capped(settings):
    settings.RETRY_MAX_DELAY_SECONDS = 3.0
    assert backoff_delay(1, retry_after=2.0) == 2.0
    assert backoff_delay(1, retry_after=120) == 3.0
    assert backoff_delay(1, retry_after=-1) == 0.0
