"""Reads for the dashboard: how the agent is doing over a date range.

Every figure is aggregated by the database (COUNT, SUM, percentile_cont on
PostgreSQL); only SQLite, which has no percentile, gets its percentiles in Python.
The page's figures are cached for a minute per range, so a year of data is read
at most once a minute however often the page is opened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.core.cache import cache
from django.db import connection
from django.db.models import (
    Aggregate,
    Avg,
    Count,
    Exists,
    F,
    FloatField,
    Func,
    Min,
    OuterRef,
    Q,
    Sum,
)
from django.db.models.functions import TruncDate
from django.utils import timezone

from agentops.models import Run
from approvals.models import PendingAction
from traces.models import Span

CACHE_SECONDS = 60


class Percentile(Aggregate):
    """PostgreSQL's percentile_cont(f) WITHIN GROUP (ORDER BY expr)."""

    function = "percentile_cont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression, fraction: float, **extra):
        super().__init__(expression, fraction=float(fraction), **extra)


class EpochSeconds(Func):
    """EXTRACT(EPOCH FROM interval): seconds of a duration, on PostgreSQL."""

    template = "EXTRACT(EPOCH FROM %(expressions)s)"
    output_field = FloatField()


@dataclass(frozen=True)
class Latency:
    label: str
    count: int
    p50: float | None  # seconds
    p99: float | None


@dataclass
class Dashboard:
    since: datetime
    until: datetime
    days: list[date]
    runs: int
    outcomes: list[tuple[str, str, int]]  # status, label, count
    final: int
    autonomous: int
    pending: int
    oldest_pending_at: datetime | None
    spend: float
    cost_per_ticket: float | None
    latencies: list[Latency] = field(default_factory=list)
    errors_by_day: dict[str, list[int]] = field(default_factory=dict)  # class → per day
    spend_by_day: dict[str, list[float]] = field(default_factory=dict)  # model → per day

    @property
    def autonomy_rate(self) -> float | None:
        return self.autonomous / self.final if self.final else None


def _percentiles(queryset, started: str, ended: str) -> tuple[int, float | None, float | None]:
    finished = queryset.filter(**{f"{started}__isnull": False, f"{ended}__isnull": False})
    if connection.vendor == "postgresql":
        seconds = EpochSeconds(F(ended) - F(started))
        row = finished.aggregate(
            n=Count("pk"), p50=Percentile(seconds, 0.5), p99=Percentile(seconds, 0.99)
        )
        return row["n"], row["p50"], row["p99"]
    values = sorted(
        (b - a).total_seconds() for a, b in finished.values_list(started, ended).iterator()
    )
    if not values:
        return 0, None, None

    def at(q: float) -> float:  # linear interpolation, as percentile_cont does
        k = (len(values) - 1) * q
        low = int(k)
        high = min(low + 1, len(values) - 1)
        return values[low] + (values[high] - values[low]) * (k - low)

    return len(values), at(0.5), at(0.99)


def _days(since: datetime, until: datetime) -> list[date]:
    first = timezone.localtime(since).date()
    last = timezone.localtime(until - timedelta(microseconds=1)).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def dashboard_get(*, since: datetime, until: datetime) -> Dashboard:
    """The dashboard's figures for runs created in [since, until), cached a minute."""
    key = f"traces:dashboard:{since.isoformat()}:{until.isoformat()}"
    found = cache.get(key)
    if found is None:
        found = _dashboard(since=since, until=until)
        cache.set(key, found, CACHE_SECONDS)
    return found


def _dashboard(*, since: datetime, until: datetime) -> Dashboard:
    # run_created / run_status_created serve the range; PendingAction's index the pending ones.
    runs = Run.objects.filter(created_at__gte=since, created_at__lt=until)
    by_status = dict(runs.order_by().values_list("status").annotate(n=Count("pk")))
    final = sum(by_status.get(s, 0) for s in Run.FINAL_STATUSES)
    # Autonomous: resolved with no action that waited for a person.
    autonomous = (
        runs.filter(status=Run.Status.RESOLVED)
        .exclude(Exists(PendingAction.objects.filter(run=OuterRef("pk"))))
        .count()
    )
    pending = PendingAction.objects.filter(status=PendingAction.Status.PENDING).aggregate(
        n=Count("pk"), oldest=Min("created_at")
    )
    money = runs.filter(status__in=Run.FINAL_STATUSES).aggregate(spend=Sum("cost"), avg=Avg("cost"))
    all_spend = runs.aggregate(spend=Sum("cost"))["spend"] or 0

    latencies = []
    n, p50, p99 = _percentiles(
        runs.filter(status__in=Run.FINAL_STATUSES), "started_at", "finished_at"
    )
    latencies.append(Latency("Whole run", n, p50, p99))
    # span_started serves the range.
    spans = Span.objects.filter(started_at__gte=since, started_at__lt=until)
    for kind in (Span.Kind.MODEL, Span.Kind.TOOL, Span.Kind.VALIDATE, Span.Kind.TRIAGE):
        n, p50, p99 = _percentiles(spans.filter(kind=kind), "started_at", "ended_at")
        latencies.append(Latency(f"Step: {Span.Kind(kind).label}", n, p50, p99))

    days = _days(since, until)
    index = {day: i for i, day in enumerate(days)}
    errors: dict[str, list[int]] = {}
    rows = (
        spans.filter(~Q(error_class=""))
        .annotate(day=TruncDate("started_at"))
        .order_by()
        .values_list("day", "error_class")
        .annotate(n=Count("pk"))
    )
    for day, error_class, count in rows:
        if day in index:
            errors.setdefault(error_class, [0] * len(days))[index[day]] += count
    spend: dict[str, list[float]] = {}
    rows = (
        runs.annotate(day=TruncDate("created_at"))
        .order_by()
        .values_list("day", "model")
        .annotate(total=Sum("cost"))
    )
    for day, model, total in rows:
        if day in index and total:
            spend.setdefault(model or "(none)", [0.0] * len(days))[index[day]] += float(total)

    return Dashboard(
        since=since,
        until=until,
        days=days,
        runs=sum(by_status.values()),
        outcomes=[(s, label, by_status.get(s, 0)) for s, label in Run.Status.choices],
        final=final,
        autonomous=autonomous,
        pending=pending["n"],
        oldest_pending_at=pending["oldest"],
        spend=float(all_spend),
        cost_per_ticket=float(money["avg"]) if money["avg"] is not None else None,
        latencies=latencies,
        errors_by_day=dict(sorted(errors.items())),
        spend_by_day=dict(sorted(spend.items())),
    )
