"""Users who may replay, runs with conversations, and a stand-in for the replay engine."""

from __future__ import annotations

import pytest

from agentops.models import Run
from tests.conftest import _user
from tests.evals.helpers import LOOKUP_OK, refund_conversation
from tests.runtime.conftest import _fast_retries, make_order, submit  # noqa: F401
from tests.web.conftest import make_effect, make_run, make_span  # noqa: F401

ENGINEER_PERMS = [
    "evals.replay_run",
    "evals.add_regressioncase",
    "evals.change_regressioncase",
]


@pytest.fixture
def engineer(django_user_model):
    return _user(django_user_model, "engineer", staff=True, perms=ENGINEER_PERMS)


@pytest.fixture
def live_engineer(django_user_model):
    return _user(
        django_user_model, "live", staff=True, perms=[*ENGINEER_PERMS, "agentops.replay_live"]
    )


@pytest.fixture
def refund_run(make_run, make_span):  # noqa: F811
    """A resolved production run: looked the order up, refunded $19.99, replied."""
    run = make_run(
        Run.Status.RESOLVED,
        subject="Blender arrived broken",
        messages=refund_conversation(1999),
        reply="Done.",
        model_calls=4,
    )
    make_span(
        run,
        kind="tool",
        name="lookup_order",
        step=1,
        input={"order_id": "ORD-10023"},
        output=LOOKUP_OK,
    )
    return run


@pytest.fixture
def fake_engine(monkeypatch):
    """The replay engine's boundary, for the view tests: records each call and makes a run.

    `fake_engine.messages` is the conversation the replay "produces"; tests of the
    real engine (the evals command, the browser) do not use this.
    """

    class FakeEngine:
        def __init__(self):
            self.calls: list[dict] = []
            self.messages = refund_conversation(999)
            self.status = Run.Status.RESOLVED

        def __call__(self, run, *, mode, live=False, from_step=None, **kwargs):
            # The real engine's dry runs are forks; a fork without a step is refused there.
            assert mode not in ("fork", "eval", "shadow") or from_step, "a fork needs from_step"
            self.calls.append(
                {"run": run, "mode": mode, "live": live, "from_step": from_step, **kwargs}
            )
            return Run.objects.create(
                ticket=run.ticket,
                status=self.status,
                model=kwargs.get("model") or run.model,
                prompt_version=kwargs.get("prompt_version") or run.prompt_version,
                mode=mode,
                replay_of=run,
                replay_from_step=from_step,
                dry_run=not live,
                messages=self.messages,
            )

    fake = FakeEngine()
    monkeypatch.setattr("evals.engine.replay", fake)
    return fake
