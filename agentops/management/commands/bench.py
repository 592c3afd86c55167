"""`manage.py bench`: agentops's throughput and latency against the floor, same run."""

from __future__ import annotations

import platform

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from agentops.bench.floor import floor_table_create
from agentops.bench.runner import (
    Workers,
    measure_agentops,
    measure_floor,
    measure_latency,
    median_of,
    one_ticket_counted,
    percentile,
)


class Command(BaseCommand):
    help = "Benchmark agentops against a bare Celery task doing 5 INSERTs per ticket."

    def add_arguments(self, parser):
        parser.add_argument("--tickets", type=int, default=1000, help="tickets per round")
        parser.add_argument("--rounds", type=int, default=3)
        parser.add_argument("--warmup", type=int, default=100)
        parser.add_argument("--latency-tickets", type=int, default=200)
        parser.add_argument("--processes", type=int, default=2, help="worker processes")
        parser.add_argument(
            "--rss-tickets",
            type=int,
            default=10_000,
            help="tickets the workers' memory is watched over (rounds included; more run "
            "after the latency measurement until this many have gone through)",
        )

    def handle(
        self, *args, tickets, rounds, warmup, latency_tickets, processes, rss_tickets, **opts
    ):
        if connection.vendor != "postgresql":
            raise CommandError("The benchmark runs on PostgreSQL: set DATABASE_URL.")
        if settings.CELERY_BROKER_URL.startswith("filesystem"):
            raise CommandError("The benchmark needs a real broker: set CELERY_BROKER_URL.")
        floor_table_create()
        workers = Workers(processes=processes, env={})
        out = self.stdout.write
        out(
            f"machine: {platform.node()} {platform.machine()}, {_cpus()} CPUs, "
            f"Python {platform.python_version()}, "
            f"PostgreSQL {connection.pg_version // 10000}.{connection.pg_version % 100}, "
            f"broker {settings.CELERY_BROKER_URL.split('://')[0]}"
        )
        out(
            f"workload: {tickets} tickets x {rounds} rounds (median quoted), warm-up {warmup}, "
            f"{processes} worker processes"
        )
        workers.start()
        try:
            measure_agentops(warmup, workers=workers)
            measure_floor(warmup, workers=workers)
            rss_before = workers.rss_kib()
            ours, floor = [], []
            for n in range(1, rounds + 1):
                floor.append(measure_floor(tickets, workers=workers))
                ours.append(measure_agentops(tickets, workers=workers))
                out(
                    f"  round {n}: agentops {ours[-1]['per_second']:.1f}/s, "
                    f"floor {floor[-1]['per_second']:.1f}/s"
                )
            latencies = measure_latency(latency_tickets, queue=workers.queue)
            watched = rounds * tickets + latency_tickets
            while watched < rss_tickets:
                batch = min(tickets, rss_tickets - watched)
                measure_agentops(batch, workers=workers)
                watched += batch
            rss_after = workers.rss_kib()
        finally:
            workers.stop()
        counted = one_ticket_counted()

        ours_rate, floor_rate = median_of(ours, "per_second"), median_of(floor, "per_second")
        out("")
        out(f"{'':32}{'agentops':>12}{'floor':>12}")
        out(f"{'tickets/s (median)':32}{ours_rate:>12.1f}{floor_rate:>12.1f}")
        out(f"{'ratio agentops / floor':32}{ours_rate / floor_rate:>12.2f}")
        for key, label in [
            ("write_transactions", "write transactions / ticket"),
            ("wal_bytes", "WAL bytes / ticket"),
            ("rows_written", "rows written / ticket"),
            ("connections", "new connections / ticket"),
        ]:
            out(f"{label:32}{median_of(ours, key):>12.2f}{median_of(floor, key):>12.2f}")
        out("counted in-process, one ticket:")
        for key, label in [
            ("round_trips", "  queries sent (round trips)"),
            ("statements", "  statements (no BEGIN/COMMIT)"),
            ("write_transactions", "  write transactions"),
        ]:
            out(f"{label:32}{counted['agentops'][key]:>12}{counted['floor'][key]:>12}")
        out(
            f"enqueue -> resolved, one at a time ({len(latencies.total)} tickets): "
            f"p50 {percentile(latencies.total, 50):.1f} ms, "
            f"p99 {percentile(latencies.total, 99):.1f} ms"
        )
        out(
            f"  of which enqueue -> claimed p50 {percentile(latencies.to_claim, 50):.1f} ms, "
            f"claimed -> resolved p50 {percentile(latencies.running, 50):.1f} ms"
        )
        growth = (sum(rss_after) - sum(rss_before)) / sum(rss_before) * 100
        out(
            f"worker RSS (KiB per process) over {watched} agentops tickets after the warm-up "
            f"(floor tasks too): before {rss_before}, after {rss_after} ({growth:+.1f}%)"
        )


def _cpus() -> int:
    import os

    return os.cpu_count() or 0
