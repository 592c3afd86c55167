"""Reads for the dashboard: how the agent is doing over a date range.

Every figure is aggregated by the database (COUNT, SUM, percentile_cont on
PostgreSQL); only SQLite, which has no percentile, gets its percentiles in Python.
The page's figures are cached per range, a minute (ten for ranges over a month),
so a year of data is read at most that often however often the page is opened.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import (
    Aggregate,
    Avg,
    Count,
    Exists,
    F,
    Field,
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
from agentops.reconciliation import reconciliation_report
from agentops.runtime.budget import day_spend
from approvals.models import PendingAction
from traces.models import STEP_LATENCY_KINDS, Span

logger = logging.getLogger(__name__)

CACHE_SECONDS = 60
# A long range barely moves in ten minutes, and costs the most to compute.
LONG_RANGE_DAYS, LONG_RANGE_CACHE_SECONDS = 31, 600


class Percentiles(Aggregate):
    """percentile_cont(ARRAY[...]): several percentiles from one sort (a list back)."""

    function = "percentile_cont"
    template = "%(function)s(ARRAY[%(fractions)s]) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = Field()  # no conversion: psycopg hands back the float8[] as a list

    def __init__(self, expression, fractions: tuple[float, ...], **extra):
        text = ", ".join(f"{float(f)!r}::float8" for f in fractions)
        super().__init__(expression, fractions=text, **extra)


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
    # Reconciliation: more than one provider refund for the same ticket and order.
    duplicate_refunds: int | None = None
    duplicates_provider: str = ""
    spend_today: float = 0.0
    daily_cap: float = 0.0
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
        row = finished.aggregate(n=Count("*"), p=Percentiles(seconds, (0.5, 0.99)))
        p50, p99 = row["p"] or (None, None)
        return row["n"], p50, p99
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


def _step_percentiles(spans, kinds) -> dict[str, tuple[int, float | None, float | None]]:
    """(count, p50, p99) of span durations per kind, in one grouped query on PostgreSQL."""
    ended = spans.filter(kind__in=kinds, ended_at__isnull=False)
    if connection.vendor != "postgresql":
        return {
            kind: _percentiles(ended.filter(kind=kind), "started_at", "ended_at") for kind in kinds
        }
    seconds = EpochSeconds(F("ended_at") - F("started_at"))
    rows = (
        ended.order_by().values("kind").annotate(n=Count("*"), p=Percentiles(seconds, (0.5, 0.99)))
    )
    return {row["kind"]: (row["n"], *row["p"]) for row in rows}


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
        long_range = until - since > timedelta(days=LONG_RANGE_DAYS)
        cache.set(key, found, LONG_RANGE_CACHE_SECONDS if long_range else CACHE_SECONDS)
    return found


def _duplicate_refunds(*, since: datetime) -> tuple[int | None, str]:
    """Duplicates as reconciliation counts them: at the provider, not in our own ledger.

    None when the provider cannot be asked; the page says so rather than show 0.
    """
    try:
        report = reconciliation_report(since=since)
    except Exception:  # a provider outage must not take the dashboard down
        logger.warning("dashboard: reconciliation failed", exc_info=True)
        return None, ""
    return len(report.duplicates), report.provider


def _dashboard(*, since: datetime, until: datetime) -> Dashboard:
    # run_created_id / run_status_created serve the range; PendingAction's index the pending ones.
    # Outcomes are production's: replays, evals and shadow runs would skew them (their
    # model spend still counts below, it is real money).
    runs = Run.objects.filter(created_at__gte=since, created_at__lt=until, mode=Run.Mode.PRODUCTION)
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
    all_spend = (
        Run.objects.filter(created_at__gte=since, created_at__lt=until).aggregate(
            spend=Sum("cost")
        )["spend"]
        or 0
    )

    latencies = []
    n, p50, p99 = _percentiles(
        runs.filter(status__in=Run.FINAL_STATUSES), "started_at", "finished_at"
    )
    latencies.append(Latency("Whole run", n, p50, p99))
    # span_kind_started (covering ended_at) serves the range: one index-only pass per kind.
    spans = Span.objects.filter(started_at__gte=since, started_at__lt=until)
    steps = _step_percentiles(spans, STEP_LATENCY_KINDS)
    for kind in STEP_LATENCY_KINDS:
        n, p50, p99 = steps.get(kind, (0, None, None))
        latencies.append(Latency(f"Step: {Span.Kind(kind).label}", n, p50, p99))

    days = _days(since, until)
    index = {day: i for i, day in enumerate(days)}
    errors: dict[str, list[int]] = {}
    rows = (
        spans.filter(~Q(error_class=""))
        .annotate(day=TruncDate("started_at"))
        .order_by()
        .values_list("day", "error_class")
        .annotate(n=Count("*"))  # not COUNT(id): the partial index alone answers
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

    duplicates, provider = _duplicate_refunds(since=since)
    return Dashboard(
        since=since,
        until=until,
        duplicate_refunds=duplicates,
        duplicates_provider=provider,
        spend_today=float(day_spend()),
        daily_cap=float(settings.DAILY_MAX_COST_USD),
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
