"""Alerts: the current value of each rule's metric, and the link that shows it."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import Count, Min, Q, Sum
from django.urls import reverse

from agentops.models import Run
from approvals.models import PendingAction
from traces.dashboard import _percentiles
from traces.models import AlertRule


def alert_value(*, rule: AlertRule, now: datetime) -> Decimal | None:
    """The metric now, or None when there is nothing to measure."""
    since = now - timedelta(minutes=rule.window_minutes)
    # Error rate and latency are production's: a diverged exact replay ends failed on
    # purpose. Spend counts every run, replays included: it is real money.
    production = Run.objects.filter(mode=Run.Mode.PRODUCTION)
    if rule.metric == AlertRule.Metric.ERROR_RATE:
        finished = production.filter(finished_at__gte=since, finished_at__lte=now)
        row = finished.aggregate(n=Count("pk"), failed=Count("pk", filter=Q(status="failed")))
        if not row["n"]:
            return None
        return Decimal(row["failed"] * 100) / row["n"]
    if rule.metric == AlertRule.Metric.P99_LATENCY:
        finished = production.filter(finished_at__gte=since, finished_at__lte=now)
        _, _, p99 = _percentiles(finished, "started_at", "finished_at")
        return None if p99 is None else Decimal(str(round(p99, 4)))
    if rule.metric == AlertRule.Metric.SPEND_PER_HOUR:
        spent = Run.objects.filter(created_at__gte=since, created_at__lte=now).aggregate(
            s=Sum("cost")
        )["s"]
        return (spent or Decimal(0)) * 60 / rule.window_minutes
    if rule.metric == AlertRule.Metric.OLDEST_APPROVAL:
        oldest = PendingAction.objects.filter(status=PendingAction.Status.PENDING).aggregate(
            oldest=Min("created_at")
        )["oldest"]
        if oldest is None:
            return None
        return Decimal(str(round((now - oldest).total_seconds() / 60, 4)))
    raise ValueError(f"unknown metric {rule.metric!r}")


def alert_link(*, rule: AlertRule, now: datetime) -> str:
    """The page that shows what crossed the threshold (a path; the notifier makes it absolute)."""
    day = (now - timedelta(minutes=rule.window_minutes)).date().isoformat()
    runs = reverse("runs")
    return {
        AlertRule.Metric.ERROR_RATE: f"{runs}?status=failed&since={day}",
        AlertRule.Metric.P99_LATENCY: f"{runs}?sort=duration&since={day}",
        AlertRule.Metric.SPEND_PER_HOUR: f"{runs}?sort=cost&since={day}",
        AlertRule.Metric.OLDEST_APPROVAL: reverse("approvals"),
    }[rule.metric]
