"""Alerts: admin thresholds, one notification per incident, a link to the view that shows it."""

import json
import threading
from datetime import timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core import mail
from django.utils import timezone

from agentops.models import Run
from traces.alerts import alert_value
from traces.models import AlertRule, Incident
from traces.services import alerts_check


@pytest.fixture
def webhook(settings):
    """A local Slack-compatible endpoint that keeps what it is posted."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings.ALERT_WEBHOOK_URL = f"http://127.0.0.1:{server.server_address[1]}/hook"
    settings.ALERT_EMAILS = ["oncall@example.com"]
    settings.SITE_URL = "https://agentops.example.com"
    yield received
    server.shutdown()
    server.server_close()


def finished(make_run, status, *, minutes_ago=5, seconds=10, **fields):
    end = timezone.now() - timedelta(minutes=minutes_ago)
    return make_run(status, started_at=end - timedelta(seconds=seconds), finished_at=end, **fields)


def check(capture):
    with capture(execute=True):
        return alerts_check()


def test_it_notifies_once_per_incident_and_closes_it_when_back_under(
    make_run, webhook, django_capture_on_commit_callbacks
):
    rule = AlertRule.objects.create(
        name="Failures", metric=AlertRule.Metric.ERROR_RATE, threshold=Decimal("25")
    )
    finished(make_run, Run.Status.RESOLVED)
    finished(make_run, Run.Status.FAILED)

    opened = check(django_capture_on_commit_callbacks)
    assert len(opened) == 1 and opened[0].value == Decimal("50")
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["oncall@example.com"]
    assert "is 50.00, above 25" in mail.outbox[0].body
    assert len(webhook) == 1
    assert "https://agentops.example.com/runs/?status=failed&since=" in webhook[0]["text"]

    assert check(django_capture_on_commit_callbacks) == []  # still above: no second message
    assert len(mail.outbox) == 1 and len(webhook) == 1

    for _ in range(4):
        finished(make_run, Run.Status.RESOLVED)
    check(django_capture_on_commit_callbacks)  # 1 of 6 failed: under 25 %
    incident = Incident.objects.get(rule=rule)
    assert incident.resolved_at is not None

    for _ in range(4):
        finished(make_run, Run.Status.FAILED)
    assert len(check(django_capture_on_commit_callbacks)) == 1  # a new incident, a new message
    assert len(mail.outbox) == 2 and len(webhook) == 2


def test_it_measures_p99_latency_spend_and_the_oldest_approval(make_run, make_action, settings):
    settings.ALERT_WEBHOOK_URL = ""
    finished(make_run, Run.Status.RESOLVED, seconds=600)
    make_run(Run.Status.RESOLVED, cost=Decimal("3.00"), created_at=timezone.now())
    waiting = make_run(Run.Status.AWAITING_APPROVAL)
    make_action(waiting, created_at=timezone.now() - timedelta(minutes=90))
    for metric, threshold in [
        (AlertRule.Metric.P99_LATENCY, "300"),
        (AlertRule.Metric.SPEND_PER_HOUR, "2"),
        (AlertRule.Metric.OLDEST_APPROVAL, "60"),
    ]:
        AlertRule.objects.create(name=metric, metric=metric, threshold=Decimal(threshold))
    AlertRule.objects.create(
        name="quiet", metric=AlertRule.Metric.OLDEST_APPROVAL, threshold=Decimal("120")
    )
    opened = {i.rule.name: i for i in alerts_check()}
    assert set(opened) == {"p99_latency", "spend_per_hour", "oldest_approval"}
    # Two runs finished in the window, 600 s and 3.5 s (the spend one): p99 interpolates.
    assert float(opened["p99_latency"].value) == pytest.approx(3.5 + (600 - 3.5) * 0.99, abs=0.01)
    assert opened["oldest_approval"].value == pytest.approx(Decimal("90"), abs=Decimal("0.1"))


def test_a_broken_webhook_does_not_stop_the_check(
    make_run, settings, django_capture_on_commit_callbacks
):
    settings.ALERT_WEBHOOK_URL = "http://127.0.0.1:9/nothing-listens"
    AlertRule.objects.create(name="F", metric=AlertRule.Metric.ERROR_RATE, threshold=Decimal("0"))
    finished(make_run, Run.Status.FAILED)
    assert len(check(django_capture_on_commit_callbacks)) == 1
    assert Incident.objects.filter(resolved_at__isnull=True).count() == 1


def test_a_disabled_rule_or_an_empty_window_opens_nothing(make_run):
    AlertRule.objects.create(
        name="off", metric=AlertRule.Metric.ERROR_RATE, threshold=Decimal("0"), enabled=False
    )
    AlertRule.objects.create(
        name="empty", metric=AlertRule.Metric.ERROR_RATE, threshold=Decimal("0")
    )
    finished(make_run, Run.Status.FAILED, minutes_ago=120)  # outside the 60-minute window
    assert alerts_check() == []


def test_admins_set_thresholds_in_the_admin(client, admin_user):
    client.force_login(admin_user)
    response = client.post(
        "/admin/traces/alertrule/add/",
        {
            "name": "Spend",
            "metric": "spend_per_hour",
            "threshold": "5",
            "window_minutes": "60",
            "enabled": "on",
        },
    )
    assert response.status_code == 302
    rule = AlertRule.objects.get(name="Spend")
    assert rule.threshold == Decimal("5")
    assert client.get("/admin/traces/incident/").status_code == 200
    assert client.get("/admin/traces/incident/add/").status_code == 403


def test_replays_that_fail_on_purpose_do_not_raise_the_error_rate(make_run):
    rule = AlertRule.objects.create(
        name="Failures", metric=AlertRule.Metric.ERROR_RATE, threshold=Decimal("25")
    )
    production = finished(make_run, Run.Status.RESOLVED)
    # A diverged exact replay ends failed: that is its finding, not an outage.
    finished(make_run, Run.Status.FAILED, mode=Run.Mode.EXACT, replay_of=production)
    assert alert_value(rule=rule, now=timezone.now()) == Decimal(0)
