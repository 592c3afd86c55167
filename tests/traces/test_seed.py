"""manage.py seed_traces: bulk synthetic runs that the trace pages can be measured on."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Count
from django.urls import reverse

from agentops.models import Run, Ticket
from traces.models import Span
from traces.seed import SEED_PREFIX

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_seeds_runs_with_about_ten_spans_each_under_one_root(client, support_lead):
    out = StringIO()
    call_command("seed_traces", runs=120, batch=50, stdout=out)
    assert "Seeded 120 runs" in out.getvalue()
    assert Run.objects.count() == 120
    assert Ticket.objects.filter(external_id__startswith=SEED_PREFIX).count() == 120
    started = Run.objects.exclude(status=Run.Status.QUEUED)
    per_run = Span.objects.values("run_id").annotate(n=Count("id"))
    assert {row["run_id"] for row in per_run} == set(started.values_list("pk", flat=True))
    average = sum(row["n"] for row in per_run) / len(per_run)
    assert 7 <= average <= 14
    for run in started[:20]:
        roots = Span.objects.filter(run=run, parent_span_id="")
        assert [s.span_id for s in roots] == [run.trace_id[:16]]
        assert not Span.objects.filter(run=run).exclude(parent_span_id__in=["", run.trace_id[:16]])
    assert set(Span.objects.exclude(error_class="").values_list("error_class", flat=True)) >= {
        "transient",
        "terminal",
    }
    # The pages work on what it made.
    client.force_login(support_lead)
    assert client.get(reverse("runs"), {"error_class": "transient"}).status_code == 200
    busiest = started.annotate(n=Count("spans")).order_by("-n").first()
    assert client.get(f"/runs/{busiest.code}/").status_code == 200


def test_it_tops_up_to_a_total_and_clears_what_it_seeded():
    call_command("seed_traces", runs=30, stdout=StringIO())
    out = StringIO()
    call_command("seed_traces", runs=50, top_up=True, stdout=out)
    assert "30 seeded runs already; adding 20." in out.getvalue()
    assert Run.objects.count() == 50
    call_command("seed_traces", runs=0, clear=True, stdout=StringIO())
    assert Run.objects.count() == 0 and Span.objects.count() == 0


def test_it_refuses_a_negative_count():
    with pytest.raises(CommandError, match="--runs"):
        call_command("seed_traces", runs=-1, stdout=StringIO())
