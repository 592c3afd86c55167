"""The trace search: each filter, each order, and keyset pages that neither skip nor repeat."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from agentops.models import Run
from traces.models import Span
from traces.selectors import RunFilters, run_list_page

HX = {"HX-Request": "true"}


@pytest.fixture
def lead_client(client, support_lead):
    client.force_login(support_lead)
    return client


def subjects(response) -> list[str]:
    return [run.ticket.subject for run in response.context["page"].runs]


def test_it_filters_by_error_class_of_any_span(lead_client, make_run, make_span):
    budget = make_run(Run.Status.ESCALATED, subject="Over budget")
    make_span(budget, status=Span.Status.ERROR, error_class=Span.ErrorClass.BUDGET)
    transient = make_run(subject="Retried once")
    make_span(transient, status=Span.Status.ERROR, error_class=Span.ErrorClass.TRANSIENT)
    make_span(transient)
    make_run(subject="Clean")

    response = lead_client.get(reverse("runs"), {"error_class": "budget"})
    assert subjects(response) == ["Over budget"]
    response = lead_client.get(reverse("runs"), {"error_class": "transient"})
    assert subjects(response) == ["Retried once"]
    assert 'class="error-class error-class-transient"' in response.content.decode()


def test_it_rejects_an_unknown_error_class(lead_client):
    response = lead_client.get(reverse("runs"), {"error_class": "cosmic-ray"})
    assert response.status_code == 400
    assert b"error_class" in response.content


def tool_call(make_span, run, name: str, **fields) -> None:
    """A tool call's spans as the runtime writes them: its validation, then the call."""
    make_span(run, kind=Span.Kind.VALIDATE, name=name)
    make_span(run, kind=Span.Kind.TOOL, name=name, **fields)


def test_it_filters_by_a_tool_the_run_validated_or_called(lead_client, make_run, make_span):
    refund = make_run(subject="Refunded")
    tool_call(make_span, refund, "issue_refund")
    rejected = make_run(subject="Refund failed validation")
    make_span(rejected, kind=Span.Kind.VALIDATE, name="issue_refund", error_class="validation")
    lookup = make_run(subject="Looked up only")
    tool_call(make_span, lookup, "lookup_order")
    # A model span that happens to carry the tool's name is not a use of the tool.
    make_span(make_run(subject="Model only"), kind=Span.Kind.MODEL, name="issue_refund")

    response = lead_client.get(reverse("runs"), {"tool": "issue_refund"})
    assert sorted(subjects(response)) == ["Refund failed validation", "Refunded"]


def test_it_filters_by_model(lead_client, make_run):
    make_run(subject="Sonnet", model="claude-sonnet-4-5")
    make_run(subject="Haiku", model="claude-haiku-4-5")
    response = lead_client.get(reverse("runs"), {"model": "claude-haiku-4-5"})
    assert subjects(response) == ["Haiku"]


def test_it_tells_production_runs_from_replays(lead_client, make_run):
    original = make_run(Run.Status.FAILED, subject="Production")
    make_run(Run.Status.FAILED, subject="Diverged replay", mode="exact", replay_of=original)
    make_run(subject="Eval case", mode="eval", replay_of=original, dry_run=True)

    response = lead_client.get(reverse("runs"), {"origin": "production"})
    assert subjects(response) == ["Production"]
    response = lead_client.get(reverse("runs"), {"origin": "replays", "status": "failed"})
    assert subjects(response) == ["Diverged replay"]
    response = lead_client.get(reverse("runs"))
    assert len(subjects(response)) == 3
    html = response.content.decode()
    assert 'class="badge badge-mode"' in html and "Exact replay" in html
    assert lead_client.get(reverse("runs"), {"origin": "staging"}).status_code == 400


def test_it_filters_by_a_date_range_with_the_end_day_included(lead_client, make_run):
    day = timezone.localtime().replace(hour=12, minute=0, second=0, microsecond=0)
    make_run(subject="Before", created_at=day - timedelta(days=3))
    make_run(subject="First day", created_at=day - timedelta(days=2))
    make_run(subject="Last day late", created_at=day.replace(hour=23, minute=59))
    make_run(subject="After", created_at=day + timedelta(days=1))
    since = (day - timedelta(days=2)).date().isoformat()
    response = lead_client.get(reverse("runs"), {"since": since, "until": day.date().isoformat()})
    assert subjects(response) == ["Last day late", "First day"]


def test_it_rejects_a_date_range_that_ends_before_it_starts(lead_client):
    response = lead_client.get(reverse("runs"), {"since": "2026-05-02", "until": "2026-05-01"})
    assert response.status_code == 400
    assert b"before the start" in response.content


def test_it_rejects_a_date_it_cannot_read(lead_client):
    response = lead_client.get(reverse("runs"), {"since": "yesterday-ish"})
    assert response.status_code == 400
    assert b"since" in response.content


def test_it_finds_runs_by_customer_email_in_any_case(lead_client, make_run):
    make_run(subject="Dana's", customer_email="Dana@Example.com")
    make_run(subject="Someone else's", customer_email="sam@example.com")
    response = lead_client.get(reverse("runs"), {"q": "dana@example.COM"})
    assert subjects(response) == ["Dana's"]


def test_it_finds_runs_by_ticket_code_run_code_external_id_and_trace_id(lead_client, make_run):
    target = make_run(subject="Target", external_id="zendesk-4711")
    make_run(subject="Other", external_id="zendesk-4712")
    for q in [str(target.ticket.code), str(target.code), "zendesk-4711", target.trace_id]:
        assert subjects(lead_client.get(reverse("runs"), {"q": q})) == ["Target"], q


def test_it_filters_by_duration_above_a_number_of_seconds(lead_client, make_run):
    now = timezone.now()
    make_run(subject="Slow", started_at=now - timedelta(seconds=90), finished_at=now)
    make_run(subject="Quick", started_at=now - timedelta(seconds=2), finished_at=now)
    make_run(Run.Status.RUNNING, subject="Still running", finished_at=None)
    response = lead_client.get(reverse("runs"), {"min_duration": "30"})
    assert subjects(response) == ["Slow"]


def test_it_filters_by_cost_above_a_value(lead_client, make_run):
    make_run(subject="Dear", cost=Decimal("0.25"))
    make_run(subject="Exactly", cost=Decimal("0.10"))
    make_run(subject="Cheap", cost=Decimal("0.01"))
    response = lead_client.get(reverse("runs"), {"min_cost": "0.10", "sort": "cost"})
    assert subjects(response) == ["Dear", "Exactly"]


def test_the_cost_sort_and_filter_hold_finished_runs(lead_client, make_run):
    """Like the duration's: a running run's cost is not yet what it will have cost."""
    now = timezone.now()
    make_run(subject="Done", cost=Decimal("0.20"), finished_at=now)
    make_run(Run.Status.RUNNING, subject="Still running", cost=Decimal("0.90"), finished_at=None)
    make_run(Run.Status.AWAITING_APPROVAL, subject="Parked", cost=Decimal("0.50"), finished_at=None)

    assert subjects(lead_client.get(reverse("runs"), {"sort": "cost"})) == ["Done"]
    assert subjects(lead_client.get(reverse("runs"), {"min_cost": "0.10"})) == ["Done"]
    running = Run.objects.get(status=Run.Status.RUNNING)
    assert running.final_cost is None
    response = lead_client.get(reverse("runs"), {"sort": "cost", "after": running.code})
    assert response.status_code == 404  # a cursor outside the order, as for duration


def test_it_rejects_a_negative_cost(lead_client):
    response = lead_client.get(reverse("runs"), {"min_cost": "-1"})
    assert response.status_code == 400


def test_it_combines_filters(lead_client, make_run, make_span):
    hit = make_run(Run.Status.FAILED, subject="Hit", model="claude-sonnet-4-5")
    tool_call(make_span, hit, "issue_refund", error_class="terminal")
    miss = make_run(Run.Status.FAILED, subject="Wrong model", model="offline")
    tool_call(make_span, miss, "issue_refund", error_class="terminal")
    params = {
        "status": "failed",
        "model": "claude-sonnet-4-5",
        "tool": "issue_refund",
        "error_class": "terminal",
    }
    assert subjects(lead_client.get(reverse("runs"), params)) == ["Hit"]


def test_it_keeps_every_filter_in_the_status_links_and_the_pager(lead_client, make_run):
    for _ in range(51):
        make_run(Run.Status.FAILED, model="offline")
    html = lead_client.get(
        reverse("runs"), {"model": "offline", "sort": "oldest", "status": "failed"}
    ).content.decode()
    assert 'href="/runs/?status=escalated&amp;model=offline&amp;sort=oldest"' in html
    assert "status=failed&amp;model=offline&amp;sort=oldest&amp;after=" in html


def test_it_says_when_no_run_matches_and_offers_to_clear(lead_client, make_run):
    make_run()
    html = lead_client.get(reverse("runs"), {"model": "nothing-like-it"}, headers=HX)
    assert "No runs match these filters" in html.content.decode()


# --- order and pages --------------------------------------------------------


def walk(filters: RunFilters, size: int) -> tuple[list[int], list[int]]:
    """All pages forward with `after`, then back from the last with `before`."""
    page = run_list_page(filters=filters, size=size)
    pages = [page]
    while page.has_next:
        page = run_list_page(filters=filters, after=page.runs[-1].code, size=size)
        pages.append(page)
    forward = [r.pk for p in pages for r in p.runs]
    backward_pages = [pages[-1]]
    page = pages[-1]
    while page.has_previous:
        page = run_list_page(filters=filters, before=page.runs[0].code, size=size)
        backward_pages.append(page)
    backward = [r.pk for p in reversed(backward_pages) for r in p.runs]
    return forward, backward


@pytest.fixture
def twelve_runs(make_run):
    """Twelve finished runs with ties in every sort key, so the id has to break them."""
    base = timezone.now() - timedelta(days=1)
    runs = []
    for i in range(12):
        created = base + timedelta(minutes=i // 3)  # three runs share each instant
        runs.append(
            make_run(
                created_at=created,
                started_at=created,
                finished_at=created + timedelta(seconds=10 + i % 4),
                cost=Decimal("0.01") * (i % 5),
            )
        )
    return runs


@pytest.mark.parametrize(
    ("sort", "key"),
    [
        ("newest", lambda r: (r.created_at, r.pk)),
        ("oldest", lambda r: (r.created_at, r.pk)),
        ("cost", lambda r: (r.cost, r.pk)),
        ("duration", lambda r: (r.finished_at - r.started_at, r.pk)),
    ],
)
def test_it_pages_every_order_without_skipping_or_repeating(twelve_runs, sort, key):
    expected = [r.pk for r in sorted(twelve_runs, key=key, reverse=sort != "oldest")]
    forward, backward = walk(RunFilters(sort=sort), size=5)
    assert forward == expected
    assert backward == expected


def test_it_pages_a_filtered_list_in_order(make_run, make_span):
    base = timezone.now() - timedelta(hours=1)
    expected = []
    for i in range(9):
        run = make_run(created_at=base + timedelta(minutes=i))
        if i % 2 == 0:
            tool_call(make_span, run, "issue_refund")
            expected.append(run.pk)
    forward, backward = walk(RunFilters(tool="issue_refund"), size=2)
    assert forward == list(reversed(expected))
    assert backward == forward


def test_it_answers_404_for_a_duration_cursor_on_a_run_without_duration(lead_client, make_run):
    queued = make_run(Run.Status.QUEUED)
    response = lead_client.get(reverse("runs"), {"sort": "duration", "after": str(queued.code)})
    assert response.status_code == 404


def test_it_lists_runs_by_day_in_the_local_timezone(lead_client, make_run, settings):
    # Created now, not make_run's five minutes ago: that is yesterday just after midnight.
    make_run(subject="Today", created_at=timezone.now())
    today = timezone.localdate()
    response = lead_client.get(reverse("runs"), {"since": today.isoformat()})
    assert subjects(response) == ["Today"]
    response = lead_client.get(reverse("runs"), {"until": (today - timedelta(days=1)).isoformat()})
    assert subjects(response) == []
    assert isinstance(today, date)
