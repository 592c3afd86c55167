"""Hostile input: hypothesis profiles, a model that says whatever it is told, isolated examples.

Profiles (HYPOTHESIS_PROFILE, default `ci`):
- `ci`: derandomized (the same examples on every run, so a red build is reproducible
  and no run of the suite is red by chance), no example database, 40 examples a test.
- `dev`: random examples, remembered under AGENTOPS_VAR_DIR so a failure found once is
  tried first next time.
- `thorough`: many more examples, for a long run by hand.
No profile has a deadline: an example is a whole agent run on a database, and its
duration says nothing about correctness (timings belong in benchmarks).
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import pytest
from django.conf import settings as django_settings
from django.core import mail
from django.db import transaction
from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

from agentops.integrations.llm import ModelResponse
from tests.api.conftest import api, api_token  # noqa: F401  (fixtures)
from tests.runtime.conftest import _fast_retries, make_order, scripted, submit  # noqa: F401

_COMMON = {
    "deadline": None,
    # The fixtures below are made once per test and each example rolls its own
    # writes back (`example_transaction`), so sharing them between examples is safe.
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    "print_blob": True,
}
settings.register_profile("ci", max_examples=40, derandomize=True, database=None, **_COMMON)
settings.register_profile(
    "dev",
    max_examples=40,
    database=DirectoryBasedExampleDatabase(django_settings.VAR_DIR / "hypothesis"),
    **_COMMON,
)
settings.register_profile("thorough", max_examples=1000, database=None, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or "ci")


@contextmanager
def example_transaction():
    """One hypothesis example's writes, rolled back after it, so each starts clean.

    The test's own transaction (pytest-django) stays open around all examples; this is
    a savepoint inside it, and the runtime's transactions are savepoints inside this.
    """
    mail.outbox = []
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


class HostileModel:
    """Answers with the given responses in order, then ends its turn with plain text.

    A response is (content, stop_reason): content is sent as is, however malformed.
    """

    def __init__(self, responses: list[tuple[list, str | None]]) -> None:
        self.responses = list(responses)
        self.calls = 0

    def create(self, *, model, system, messages, tools, max_tokens) -> ModelResponse:
        self.calls += 1
        if self.responses:
            content, stop = self.responses.pop(0)
        else:
            content, stop = [{"type": "text", "text": "Done."}], "end_turn"
        return ModelResponse(
            content=content,
            stop_reason=stop,
            model="hostile",
            usage={"input_tokens": 10, "output_tokens": 5},
            id=f"msg_hostile_{self.calls}",
        )


@pytest.fixture
def hostile_model(monkeypatch):
    """install(responses) puts a HostileModel in place of the agent's model client."""

    def install(responses: list[tuple[list, str | None]]) -> HostileModel:
        model = HostileModel(responses)
        monkeypatch.setattr("agentops.runtime.loop.get_model_client", lambda name: model)
        return model

    return install
