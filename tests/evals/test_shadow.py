"""Shadow mode: a candidate runs in dry run beside production, for a share of tickets."""

import pytest

from agentops.models import PromptVersion, Run
from evals.models import ShadowRun, ShadowSetting
from evals.services import shadow_after_production, shadow_bucket
from tests.evals.helpers import refund_conversation

pytestmark = pytest.mark.django_db


@pytest.fixture
def candidate():
    return PromptVersion.objects.create(name="candidate", system_prompt="Be brief.")


def _runs(make_run, n):
    return [make_run(Run.Status.RESOLVED, messages=refund_conversation()) for _ in range(n)]


def test_nothing_is_shadowed_while_shadow_mode_is_off(make_run, fake_engine):
    ShadowSetting.objects.create(pk=1, enabled=False, share_percent=100)
    run = make_run(messages=refund_conversation())
    assert shadow_after_production(run_id=run.pk) is None
    assert fake_engine.calls == []


def test_every_run_is_shadowed_in_dry_run_at_a_share_of_100(make_run, fake_engine, candidate):
    ShadowSetting.objects.create(
        pk=1, enabled=True, share_percent=100, prompt_version=candidate, model="offline-b"
    )
    run = make_run(messages=refund_conversation())

    shadow = shadow_after_production(run_id=run.pk)

    assert shadow.replay_of == run and shadow.dry_run
    assert ShadowRun.objects.get(production=run).shadow == shadow
    call = fake_engine.calls[0]
    assert (call["mode"], call["from_step"], call["live"]) == ("shadow", 1, False)
    assert (call["prompt_version"], call["model"]) == (candidate, "offline-b")


def test_only_the_share_of_tickets_is_shadowed(make_run, fake_engine):
    ShadowSetting.objects.create(pk=1, enabled=True, share_percent=30)
    runs = _runs(make_run, 40)

    for run in runs:
        shadow_after_production(run_id=run.pk)

    shadowed = {c["run"].pk for c in fake_engine.calls}
    expected = {r.pk for r in runs if shadow_bucket(r.ticket.code) < 30}
    assert shadowed == expected
    assert 0 < len(shadowed) < len(runs)


def test_a_larger_share_keeps_every_ticket_a_smaller_one_had(make_run, fake_engine):
    runs = _runs(make_run, 30)
    small = {r.pk for r in runs if shadow_bucket(r.ticket.code) < 20}
    large = {r.pk for r in runs if shadow_bucket(r.ticket.code) < 60}
    assert small <= large


def test_replays_unfinished_runs_and_second_deliveries_are_not_shadowed(make_run, fake_engine):
    ShadowSetting.objects.create(pk=1, enabled=True, share_percent=100)
    original = make_run(messages=refund_conversation())
    replay = make_run(mode=Run.Mode.RERUN, replay_of=original, messages=refund_conversation())
    running = make_run(Run.Status.RUNNING, messages=refund_conversation())
    never_asked = make_run(Run.Status.ESCALATED, outcome_reason="Routed to a person")

    assert shadow_after_production(run_id=replay.pk) is None
    assert shadow_after_production(run_id=running.pk) is None
    assert shadow_after_production(run_id=never_asked.pk) is None  # no model step to fork
    assert shadow_after_production(run_id=original.pk) is not None
    assert shadow_after_production(run_id=original.pk) is None  # already shadowed
    assert len(fake_engine.calls) == 1


def test_a_failing_shadow_never_disturbs_production(make_run, monkeypatch):
    ShadowSetting.objects.create(pk=1, enabled=True, share_percent=100)

    def broken(*args, **kwargs):
        raise RuntimeError("engine down")

    monkeypatch.setattr("evals.engine.replay", broken)
    assert shadow_after_production(run_id=make_run(messages=refund_conversation()).pk) is None


def test_the_shadow_summary_reads_every_conversation_in_a_fixed_number_of_queries(make_run):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from evals.selectors import shadow_summary

    def pair(n: int) -> None:
        production = make_run(Run.Status.RESOLVED, messages=refund_conversation())
        shadow = make_run(
            Run.Status.RESOLVED, mode=Run.Mode.SHADOW, messages=refund_conversation(500 + n)
        )
        ShadowRun.objects.create(production=production, shadow=shadow)

    counts = []
    for pairs in (2, 6):
        while ShadowRun.objects.count() < pairs:
            pair(ShadowRun.objects.count())
        with CaptureQueriesContext(connection) as queries:
            summary = shadow_summary()
        assert summary.compared == pairs and summary.agreed == 0
        counts.append(len(queries))
    assert counts[0] == counts[1]  # the pairs, then each side's turns: not one per run
