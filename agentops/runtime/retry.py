"""Bounded exponential backoff with full jitter."""

from __future__ import annotations

import random

from django.conf import settings

_rng = random.Random()


def backoff_delay(attempt: int, *, retry_after: float | None = None) -> float:
    """Seconds to wait before attempt `attempt + 1` (attempt counts from 1).

    Full jitter (AWS architecture blog): uniform(0, min(cap, base * 2**(attempt-1))).
    A provider's Retry-After is honoured, but never beyond the cap.
    """
    cap = settings.RETRY_MAX_DELAY_SECONDS
    if retry_after is not None:
        return min(max(retry_after, 0.0), cap)
    ceiling = min(cap, settings.RETRY_BASE_DELAY_SECONDS * 2 ** (attempt - 1))
    return _rng.uniform(0, ceiling)


def max_attempts() -> int:
    return max(1, settings.RETRY_MAX_ATTEMPTS)
