"""The dashboard: the landing page, its figures from the database, its charts and range."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from agentops.models import Run
from tests.conftest import PASSWORD
from traces.charts import stacked_bars


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def lead_client(client, support_lead):
    client.force_login(support_lead)
    return client


@pytest.fixture
def week(make_run, make_span, make_action):
    """A week of runs: autonomous, approved, escalated, failed, one waiting, one too old."""
    now = timezone.now()

    def run(status, *, days_ago, seconds, cost, model="claude-sonnet-4-5"):
        created = now - timedelta(days=days_ago, hours=1)
        return make_run(
            status,
            model=model,
            cost=Decimal(cost),
            created_at=created,
            started_at=created,
            finished_at=created + timedelta(seconds=seconds)
            if status in Run.FINAL_STATUSES
            else None,
        )

    auto1 = run(Run.Status.RESOLVED, days_ago=1, seconds=10, cost="0.02")
    auto2 = run(Run.Status.RESOLVED, days_ago=2, seconds=20, cost="0.04", model="claude-haiku-4-5")
    approved = run(Run.Status.RESOLVED, days_ago=2, seconds=3600, cost="0.06")
    make_action(approved, status="approved")
    escalated = run(Run.Status.ESCALATED, days_ago=3, seconds=30, cost="0.08")
    run(Run.Status.FAILED, days_ago=3, seconds=40, cost="0.10")
    waiting = run(Run.Status.AWAITING_APPROVAL, days_ago=0, seconds=0, cost="0.01")
    action = make_action(waiting, created_at=now - timedelta(hours=5))
    run(Run.Status.RESOLVED, days_ago=40, seconds=10, cost="9.99")  # outside 7 days
    for n, (target, error_class) in enumerate(
        [(escalated, "policy"), (auto1, "transient"), (auto1, "transient")]
    ):
        started = target.created_at + timedelta(seconds=n)
        make_span(
            target,
            error_class=error_class,
            status="error",
            started_at=started,
            ended_at=started + timedelta(milliseconds=300),
        )
    make_span(auto2, started_at=auto2.created_at, ended_at=auto2.created_at + timedelta(seconds=2))
    return {"action": action}


def test_it_is_the_landing_page_after_login(client, support_lead):
    response = client.post(reverse("login"), {"username": "lead", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == reverse("dashboard") == "/"
    assert reverse("runs") == "/runs/"


def test_it_shows_autonomy_outcomes_pending_and_cost_for_the_range(lead_client, week):
    response = lead_client.get(reverse("dashboard"), {"days": 7})
    assert response.status_code == 200
    data = response.context["data"]
    assert data.runs == 6
    assert (data.autonomous, data.final) == (2, 5)  # the approved one needed a person
    assert data.autonomy_rate == pytest.approx(0.4)
    outcomes = {status: count for status, _, count in data.outcomes}
    assert outcomes == {
        "queued": 0,
        "running": 0,
        "awaiting_approval": 1,
        "resolved": 3,
        "escalated": 1,
        "failed": 1,
    }
    assert data.pending == 1
    assert data.oldest_pending_at == week["action"].created_at
    assert data.cost_per_ticket == pytest.approx(0.06)  # (0.02+0.04+0.06+0.08+0.10)/5
    assert data.spend == pytest.approx(0.31)
    html = response.content.decode()
    assert "40%" in html
    assert "oldest waiting 5 h 00 m" in html


def test_it_gives_run_and_step_latency_percentiles(lead_client, week):
    data = lead_client.get(reverse("dashboard"), {"days": 7}).context["data"]
    whole = data.latencies[0]
    assert whole.label == "Whole run" and whole.count == 5
    assert whole.p50 == pytest.approx(30)  # 10, 20, 30, 40, 3600
    assert whole.p99 == pytest.approx(40 + (3600 - 40) * 0.96)
    model = next(row for row in data.latencies if row.label == "Step: Model")
    assert model.count == 4
    assert model.p50 == pytest.approx(0.3)


def test_it_counts_error_classes_and_spend_per_day_per_model(lead_client, week):
    data = lead_client.get(reverse("dashboard"), {"days": 7}).context["data"]
    assert len(data.days) == 8  # seven days back and today
    assert sum(data.errors_by_day["transient"]) == 2
    assert sum(data.errors_by_day["policy"]) == 1
    assert set(data.spend_by_day) == {"claude-sonnet-4-5", "claude-haiku-4-5"}
    assert sum(data.spend_by_day["claude-haiku-4-5"]) == pytest.approx(0.04)
    html = lead_client.get(reverse("dashboard"), {"days": 7}).content.decode()
    assert '<svg viewBox="0 0 720 190" role="img" aria-label="Errors per day, by class"' in html
    assert "<title>" in html and "transient 2</title>" in html


def test_it_takes_a_date_range_with_the_end_day_included(lead_client, week):
    today = timezone.localdate()
    since = (today - timedelta(days=41)).isoformat()
    data = lead_client.get(reverse("dashboard"), {"since": since, "until": today.isoformat()})
    assert data.context["data"].runs == 7


def test_it_rejects_a_range_that_ends_before_it_starts(lead_client):
    response = lead_client.get(reverse("dashboard"), {"since": "2026-05-02", "until": "2026-05-01"})
    assert response.status_code == 400


def test_it_reads_an_empty_database_without_dividing_by_zero(lead_client):
    response = lead_client.get(reverse("dashboard"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "nothing waiting" in html
    assert "Nothing in this range." in html


def test_it_is_for_staff_only(client, outsider):
    assert client.get(reverse("dashboard")).status_code == 302
    client.force_login(outsider)
    assert client.get(reverse("dashboard")).status_code == 403


def test_it_refuses_writes(lead_client):
    assert lead_client.post(reverse("dashboard")).status_code == 405


def test_a_stacked_bar_chart_scales_to_a_round_maximum():
    from datetime import date

    days = [date(2026, 5, 1), date(2026, 5, 2)]
    chart = stacked_bars("t", days, {"a": [3, 1], "b": [4, 0]})
    assert [label.text for label in chart.y_labels] == ["0", "5", "10"]
    heights = {(r.title): r.height for r in chart.rects}
    assert heights["May 1: a 3"] == pytest.approx(156 * 0.3)
    assert heights["May 1: b 4"] == pytest.approx(156 * 0.4)
    assert stacked_bars("t", days, {"a": [0, 0]}).empty


def _provider_refund(refund_id, *, ticket, order="ORD-10001", created_at=None):
    from agentops.simgateway.models import ProviderRefund

    return ProviderRefund.objects.create(
        refund_id=refund_id,
        payment_ref="pi_dup",
        amount_cents=500,
        currency="USD",
        idempotency_key=f"key-{refund_id}",
        metadata={"ticket": ticket, "order": order, "ledger_key": f"refund:{ticket}:{order}"},
        created_at=created_at or timezone.now(),
    )


@pytest.mark.django_db
def test_the_duplicate_refunds_tile_counts_what_reconciliation_finds_at_the_provider(
    lead_client,
):
    page = lead_client.get(reverse("dashboard"))
    assert b"Duplicate refunds" in page.content
    assert page.context["data"].duplicate_refunds == 0

    cache.clear()
    _provider_refund("re_1", ticket="t-1")
    _provider_refund("re_2", ticket="t-1")  # a second refund for the same ticket and order
    _provider_refund("re_3", ticket="t-2")

    data = lead_client.get(reverse("dashboard")).context["data"]
    assert data.duplicate_refunds == 1
    assert data.duplicates_provider == "simulated"


@pytest.mark.django_db
def test_the_spend_tile_shows_today_against_the_daily_cap(lead_client, settings):
    from agentops.runtime.budget import spend_record

    settings.DAILY_MAX_COST_USD = Decimal("50")
    spend_record(cost=Decimal("1.25"))

    page = lead_client.get(reverse("dashboard"))

    assert page.context["data"].spend_today == 1.25
    assert b"of the $50.00 daily cap" in page.content


def test_replays_do_not_count_as_outcomes_but_their_spend_does(lead_client, week, make_run):
    original = Run.objects.filter(status=Run.Status.RESOLVED).first()
    make_run(
        Run.Status.FAILED,
        mode=Run.Mode.FORK,
        replay_of=original,
        cost=Decimal("0.50"),
        created_at=timezone.now() - timedelta(hours=2),
    )
    data = lead_client.get(reverse("dashboard"), {"days": 7}).context["data"]
    assert data.runs == 6 and dict((s, n) for s, _, n in data.outcomes)["failed"] == 1
    assert data.spend == pytest.approx(0.81)  # the fork's live model calls cost money
