"""A circuit breaker and a retry budget per downstream, so retries cannot cascade.

A downstream is a name: "model:anthropic", "payments:stripe". Before each attempt
the loop asks `admit(downstream, retry=...)`; after it, `record(downstream, ok=...)`.

- The breaker is closed while the downstream mostly works. When, within the last
  BREAKER_WINDOW_SECONDS, at least BREAKER_FAILURE_THRESHOLD calls failed and they
  are at least BREAKER_FAILURE_RATE of the calls, it opens: nobody calls for
  BREAKER_COOL_DOWN_SECONDS. Then it is half-open: one caller gets to probe; its
  success closes the breaker, its failure opens it for another cool-down.
- The retry budget lets a retry go only while retries stay under RETRY_BUDGET_RATIO
  of first attempts in the window, or under RETRY_BUDGET_MIN_RETRIES, so a quiet
  system can still retry (Finagle's RetryBudget; gRPC's retry throttling).

State lives in each worker process, in memory, like resilience4j's and pybreaker's
defaults: admitting and recording cost no I/O, so the hot path gains no database or
Redis write per call. The price is that each process learns on its own: with P
processes a failing downstream sees at most P × threshold calls before every one
is open, and each then probes once per cool-down. Shared state would make every
call pay a round trip to learn the same thing a few calls sooner.

pybreaker was the library to prefer, but it does not fit here: it holds its lock
across the guarded call (every thread of a process would wait on one model call),
it cannot tell a caller "open until T" without calling, which is what lets a run
park instead, and it has no retry budget.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

from django.conf import settings

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"


@dataclass(frozen=True)
class Verdict:
    """Whether to call now; if not, why and for how long to wait."""

    allowed: bool
    state: str
    # "circuit_open" or "retry_budget" when not allowed.
    reason: str = ""
    wait_seconds: float = 0.0
    retries: int = 0
    calls: int = 0
    retries_allowed: int = 0
    probe: bool = False

    def attributes(self, downstream: str) -> dict:
        """What an attempt span records about the breaker and the budget.

        The usual case stays short, as every attempt span of every run carries it: a
        probe is marked only when it is one, and the budget's counts appear once
        retries are being spent in the window or the budget refused the call.
        """
        attrs = {"downstream": downstream, "breaker.state": self.state}
        if self.probe:
            attrs["breaker.probe"] = True
        if self.retries or self.reason == "retry_budget":
            attrs["retry_budget.retries"] = self.retries
            attrs["retry_budget.calls"] = self.calls
            attrs["retry_budget.allowed"] = self.retries_allowed
        return attrs


class Breaker:
    """The breaker and retry budget of one downstream in this process. Thread-safe.

    The lock guards the counters only, never the call itself.
    """

    def __init__(
        self,
        *,
        failure_threshold: int,
        failure_rate: float,
        window_seconds: float,
        cool_down_seconds: float,
        budget_ratio: float,
        budget_min_retries: int,
        clock=time.monotonic,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.failure_rate = failure_rate
        self.window = window_seconds
        self.cool_down = cool_down_seconds
        self.budget_ratio = budget_ratio
        self.budget_min_retries = budget_min_retries
        self.clock = clock  # tests step it by hand
        self._lock = threading.Lock()
        self._outcomes: deque[tuple[float, bool]] = deque()  # (when, ok) of finished calls
        self._calls: deque[float] = deque()  # first attempts admitted
        self._retries: deque[float] = deque()  # retries admitted
        self._state = CLOSED
        self._opened_at = 0.0
        self._probe_since: float | None = None

    @property
    def state(self) -> str:
        with self._lock:
            return self._current_state(self.clock())

    def peek(self) -> Verdict:
        """Whether a call would be refused because the breaker is open; takes no permit."""
        with self._lock:
            now = self.clock()
            state = self._current_state(now)
            if state == OPEN:
                return Verdict(False, state, "circuit_open", self._opened_at + self.cool_down - now)
            return Verdict(True, state)

    def admit(self, *, retry: bool) -> Verdict:
        """May this caller call now? A granted retry is counted against the budget."""
        with self._lock:
            now = self.clock()
            self._trim(now)
            state = self._current_state(now)
            retries, calls, allowed = self._budget()
            counts = {"retries": retries, "calls": calls, "retries_allowed": allowed}
            if state == OPEN:
                wait = self._opened_at + self.cool_down - now
                return Verdict(False, state, "circuit_open", wait, **counts)
            probe = False
            if state == HALF_OPEN:
                if self._probe_since is not None and now - self._probe_since < self.cool_down:
                    # Someone is probing; wait for their answer rather than pile on.
                    return Verdict(False, state, "circuit_open", self.cool_down, **counts)
                self._probe_since = now
                probe = True
            if retry and retries >= allowed:
                self._probe_since = None if probe else self._probe_since
                return Verdict(False, state, "retry_budget", self.cool_down, **counts)
            (self._retries if retry else self._calls).append(now)
            if retry:
                counts["retries"] += 1
            else:
                counts["calls"] += 1
            return Verdict(True, state, probe=probe, **counts)

    def record(self, *, ok: bool) -> str:
        """The outcome of an admitted call (ok: the downstream answered). Returns the state."""
        with self._lock:
            now = self.clock()
            self._trim(now)
            state = self._current_state(now)
            if state == HALF_OPEN and self._probe_since is not None:
                self._probe_since = None
                if ok:
                    self._state = CLOSED
                    self._outcomes.clear()
                else:
                    self._open(now)
                return self._state
            self._outcomes.append((now, ok))
            if state == CLOSED and not ok:
                failures = sum(1 for _, good in self._outcomes if not good)
                if (
                    failures >= self.failure_threshold
                    and failures / len(self._outcomes) >= self.failure_rate
                ):
                    self._open(now)
            return self._current_state(now)

    def _open(self, now: float) -> None:
        self._state = OPEN
        self._opened_at = now
        self._outcomes.clear()

    def _current_state(self, now: float) -> str:
        if self._state == OPEN and now - self._opened_at >= self.cool_down:
            self._state = HALF_OPEN
            self._probe_since = None
        return self._state

    def _budget(self) -> tuple[int, int, int]:
        calls = len(self._calls)
        allowed = max(self.budget_min_retries, int(self.budget_ratio * calls))
        return len(self._retries), calls, allowed

    def _trim(self, now: float) -> None:
        horizon = now - self.window
        for queue in (self._calls, self._retries):
            while queue and queue[0] < horizon:
                queue.popleft()
        while self._outcomes and self._outcomes[0][0] < horizon:
            self._outcomes.popleft()


_breakers: dict[str, Breaker] = {}
_registry_lock = threading.Lock()


def breaker_for(downstream: str) -> Breaker:
    """This process's breaker for a downstream, made from the settings on first use."""
    with _registry_lock:
        breaker = _breakers.get(downstream)
        if breaker is None:
            breaker = _breakers[downstream] = Breaker(
                failure_threshold=settings.BREAKER_FAILURE_THRESHOLD,
                failure_rate=settings.BREAKER_FAILURE_RATE,
                window_seconds=settings.BREAKER_WINDOW_SECONDS,
                cool_down_seconds=settings.BREAKER_COOL_DOWN_SECONDS,
                budget_ratio=settings.RETRY_BUDGET_RATIO,
                budget_min_retries=settings.RETRY_BUDGET_MIN_RETRIES,
            )
        return breaker


def breakers_reset() -> None:
    """Forget every breaker (tests; settings changes take effect on next use)."""
    with _registry_lock:
        _breakers.clear()


def model_downstream(model: str) -> str:
    return "model:offline" if model.startswith("offline") else "model:anthropic"
