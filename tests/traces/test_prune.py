"""manage.py prune_traces: retention in batches; old successful runs keep their figures."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from agentops.models import Run
from traces.models import Span


def prune(*args):
    out = StringIO()
    call_command("prune_traces", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def aged(make_run, make_span):
    now = timezone.now()

    def make(status, days, spans=3):
        run = make_run(status, created_at=now - timedelta(days=days))
        for _ in range(spans):
            make_span(
                run, input={"messages": ["hi"]}, output={"ok": True}, input_tokens=10, cost="0.01"
            )
        return run

    return make


def test_it_deletes_the_spans_of_finished_runs_older_than_the_cutoff_in_batches(aged):
    old_resolved = aged(Run.Status.RESOLVED, 40)
    old_failed = aged(Run.Status.FAILED, 31)
    old_but_waiting = aged(Run.Status.AWAITING_APPROVAL, 60)
    recent = aged(Run.Status.RESOLVED, 5)

    assert "Would delete 6 spans" in prune("--older-than", "30d", "--dry-run")
    assert Span.objects.count() == 12
    assert "Deleted 6 spans" in prune("--older-than", "30d", "--batch", "4")

    assert not Span.objects.filter(run__in=[old_resolved, old_failed]).exists()
    assert Span.objects.filter(run=old_but_waiting).count() == 3
    assert Span.objects.filter(run=recent).count() == 3
    assert Run.objects.filter(pk=old_resolved.pk).exists()  # the run itself stays


def test_it_drops_payloads_of_old_successful_runs_and_keeps_their_figures(aged):
    old_resolved = aged(Run.Status.RESOLVED, 10)
    old_failed = aged(Run.Status.FAILED, 10)
    recent = aged(Run.Status.RESOLVED, 1)

    assert "Dropped the payloads of 3 spans" in prune(
        "--drop-payloads-older-than", "7d", "--batch", "2"
    )
    for span in Span.objects.filter(run=old_resolved):
        assert span.input is None and span.output is None
        assert span.input_tokens == 10 and str(span.cost) == "0.010000"
        assert span.ended_at is not None and span.status == "ok"
    assert all(s.input for s in Span.objects.filter(run__in=[old_failed, recent]))


@pytest.mark.parametrize(
    "args", [[], ["--older-than", "30"], ["--older-than", "0d"], ["--older-than", "1y"]]
)
def test_it_refuses_what_it_cannot_read(args, db):
    with pytest.raises(CommandError):
        prune(*args)
