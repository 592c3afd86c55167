"""`manage.py bench`: agentops's throughput and latency against the floor, same run."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connection

from agentops.bench.floor import floor_table_create
from agentops.bench.runner import (
    Workers,
    machine,
    measure_agentops,
    measure_floor,
    measure_latencies,
    median_of,
    ms,
    one_ticket_counted,
    percentile,
    price_like_production,
)
from agentops.bench.where import CPU_GROUPS, wal_by_table, walinspect_enable


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
        priced = price_like_production()
        walinspect_missing = walinspect_enable()
        workers = Workers(processes=processes, env={})
        out = self.stdout.write
        out(machine())
        out(
            f"workload: {tickets} tickets x {rounds} rounds (median quoted), warm-up {warmup}, "
            f"{processes} worker processes, {priced}"
        )
        out(_database_state())
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
            # Read before more tickets go through: checkpoints recycle old WAL.
            wal_tables, wal_missing = _wal_tables(ours[-1], walinspect_missing)
            latencies, floor_latencies = measure_latencies(latency_tickets, queue=workers.queue)
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
        out(
            f"  the floor, the same way: p50 {percentile(floor_latencies.total, 50):.1f} ms, "
            f"p99 {percentile(floor_latencies.total, 99):.1f} ms; enqueue -> its first row "
            f"p50 {percentile(floor_latencies.to_claim, 50):.1f} ms"
        )
        out("CPU per ticket, ms (last round, process clocks):")
        for group in CPU_GROUPS:
            ours_ms, floor_ms = ours[-1]["cpu_ms"][group], floor[-1]["cpu_ms"][group]
            out(f"  {group:34}{ms(ours_ms):>8}{ms(floor_ms):>12}")
        if wal_tables is None:
            out(f"WAL per ticket by table: unavailable ({wal_missing})")
        else:
            out("WAL bytes per ticket by table, indexes and TOAST included (last round):")
            for table in wal_tables[:WAL_TABLES_SHOWN]:
                out(
                    f"  {table.table:40}{table.total / tickets:>8.0f}  "
                    f"(heap {table.heap / tickets:.0f}, indexes {table.indexes / tickets:.0f}, "
                    f"of which full pages {table.full_pages / tickets:.0f})"
                )
            rest = sum(t.total for t in wal_tables[WAL_TABLES_SHOWN:])
            if rest:
                out(f"  {'the other tables':40}{rest / tickets:>8.0f}")
            # A checkpoint inside the round makes every page's next change log the whole
            # page: where checkpoints fall moves the total, not what a ticket writes.
            total = sum(t.total for t in wal_tables)
            full = sum(t.full_pages for t in wal_tables)
            without = sum(t.without_full_pages for t in wal_tables)
            out(
                f"  {'all tables':40}{total / tickets:>8.0f}  (full pages {full / tickets:.0f}; "
                f"without full pages {without / tickets:.0f})"
            )
        growth = (sum(rss_after) - sum(rss_before)) / sum(rss_before) * 100
        out(
            f"worker RSS (KiB per process) over {watched} agentops tickets after the warm-up "
            f"(floor tasks too): before {rss_before}, after {rss_after} ({growth:+.1f}%)"
        )


WAL_TABLES_SHOWN = 8


def _database_state() -> str:
    """How much the database already holds, and whether it is vacuumed: the absolute
    figures move with it (a database created empty ran both sides faster here, the
    ratio the same), so runs compare on databases in a similar state."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM agentops_run), "
            "pg_total_relation_size('agentops_run'), pg_total_relation_size('traces_span'), "
            "current_setting('autovacuum')"
        )
        runs, run_bytes, span_bytes, autovacuum = cursor.fetchone()
    mib = 1024 * 1024
    return (
        f"database before the run: {runs} runs; runs {run_bytes / mib:.0f} MiB, "
        f"spans {span_bytes / mib:.0f} MiB with their indexes; autovacuum {autovacuum}"
    )


def _wal_tables(last_round: dict, missing: str | None):
    """The last round's WAL by table, or None and why not."""
    if missing:
        return None, missing
    try:
        return wal_by_table(*last_round["wal_between"]), None
    except DatabaseError as exc:
        return None, str(exc).strip().splitlines()[0]
