"""manage.py bench_web: p50/p95 of the trace pages against a bare view, in one process.

A benchmark, not a test: it prints figures. Run it on PostgreSQL with seeded data
(`make bench-web` seeds 100k runs / ~1M spans first). Requests go through Django's
test client, so the figures are the server's work (middleware, queries, templates)
without the network; the bare view measured in the same run is the floor.
"""

from __future__ import annotations

import statistics
import time

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.db.models import Count
from django.test import Client
from django.test.utils import override_settings
from django.urls import reverse

from agentops.models import Run
from traces.models import Span


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


class Command(BaseCommand):
    help = "Print p50/p95 per trace page (list, filtered, deep page, trace page) vs a bare view."

    def add_arguments(self, parser):
        parser.add_argument("--requests", type=int, default=40, help="timed requests per page")
        parser.add_argument("--warmup", type=int, default=5)

    def handle(self, *args, **options):
        runs = Run.objects.count()
        if runs == 0:
            raise CommandError("No runs: seed first (manage.py seed_traces).")
        with override_settings(ROOT_URLCONF="traces.bench_urls", ALLOWED_HOSTS=["testserver"]):
            self.verbosity = options["verbosity"]
            self._bench(runs, options["requests"], options["warmup"])

    def _pages(self) -> list[tuple[str, str]]:
        newest = list(Run.objects.order_by("-created_at", "-id").values_list("code", flat=True)[:1])
        deep_offset = max(Run.objects.count() // 2, 0)
        deep = Run.objects.order_by("-created_at", "-id").values_list("code", flat=True)[
            deep_offset
        ]
        busiest = Span.objects.values("run_id").annotate(n=Count("id")).order_by("-n").first() or {}
        trace_run = Run.objects.get(pk=busiest["run_id"]) if busiest else None
        failing = (
            Span.objects.filter(run=trace_run).exclude(error_class="").first()
            if trace_run
            else None
        )
        email = Run.objects.select_related("ticket").filter(code__in=newest).first()
        pages = [
            ("bare view (floor)", "/__bench/bare/"),
            ("runs list", reverse("runs")),
            ("filtered: status=failed", reverse("runs") + "?status=failed"),
            ("filtered: error_class=budget", reverse("runs") + "?error_class=budget"),
            (
                "filtered: tool+model+cost",
                reverse("runs") + "?tool=issue_refund&model=claude-opus-4-5&min_cost=0.02",
            ),
            ("filtered: slowest, 30 s+", reverse("runs") + "?sort=duration&min_duration=30"),
            ("filtered: since Jan 1, by cost", reverse("runs") + "?since=2026-01-01&sort=cost"),
            (
                "filtered: customer email",
                reverse("runs") + f"?q={email.ticket.customer_email}" if email else "/",
            ),
            (f"deep page (after run #{deep_offset})", reverse("runs") + f"?after={deep}"),
            # The cache is cleared before each of these requests: the figures are computed.
            ("dashboard, 30 days (uncached)", reverse("dashboard") + "?days=30"),
            ("dashboard, a year (uncached)", reverse("dashboard") + "?days=365"),
        ]
        if trace_run is not None:
            pages.append(
                (
                    f"trace page ({busiest['n']} spans)",
                    reverse("run_detail", args=[trace_run.code]),
                )
            )
            if failing is not None:
                pages.append(
                    (
                        "span detail (htmx)",
                        reverse("span_detail", args=[trace_run.code, failing.span_id]),
                    )
                )
        return pages

    def _bench(self, runs: int, count: int, warmup: int) -> None:
        user, _ = get_user_model().objects.get_or_create(
            username="bench", defaults={"is_staff": True}
        )
        client = Client()
        client.force_login(user)
        spans = Span.objects.count()
        self.stdout.write(
            f"bench-web: {runs} runs, {spans} spans on {connection.vendor}; "
            f"{count} timed requests per page after {warmup} warm-up"
        )
        self.stdout.write(
            f"{'page':<38} {'p50 ms':>8} {'p95 ms':>8} {'p50/bare':>9} {'queries':>8}  status"
        )
        bare_p50 = None
        for label, url in self._pages():
            headers = {"HX-Request": "true"} if "htmx" in label else {}
            uncached = "uncached" in label
            for _ in range(warmup):
                client.get(url, headers=headers)
            queries: list[tuple[float, str]] = []

            def timed(execute, sql, params, many, context, queries=queries):
                began = time.perf_counter()
                try:
                    return execute(sql, params, many, context)
                finally:
                    queries.append(((time.perf_counter() - began) * 1000, sql))

            with connection.execute_wrapper(timed):
                response = client.get(url, headers=headers)
            timings = []
            for _ in range(count if not uncached else max(count // 4, 3)):
                if uncached:
                    cache.clear()
                began = time.perf_counter()
                response = client.get(url, headers=headers)
                timings.append((time.perf_counter() - began) * 1000)
            p50, p95 = statistics.median(timings), _percentile(timings, 0.95)
            bare_p50 = bare_p50 or p50
            self.stdout.write(
                f"{label:<38} {p50:>8.1f} {p95:>8.1f} {p50 / bare_p50:>8.1f}x "
                f"{len(queries):>8}  {response.status_code}"
            )
            if self.verbosity > 1:
                for ms, sql in sorted(queries, reverse=True)[:2]:
                    self.stdout.write(f"    {ms:7.1f} ms  {sql[:300]}")
