"""`manage.py bench_sql_alone`: the floor, agentops' SQL on its own, and agentops, same run.

How much of the gap between agentops and the floor is the SQL a ticket sends, and
how much the code that decides it: real tickets are run in this process with their
round trips recorded (agentops.bench.replayed), then the workers run three kinds of
task in turn, on a copy of the database taken before those tickets ran:

- the floor: `make bench`'s bare task with five single-row INSERTs;
- agentops' SQL alone: a recorded ticket's round trips sent again, verbatim;
- agentops: tickets created with the recorded ones, run as `make bench` runs them.

Then a ticket of each kind at a time, in turn, from enqueue to done, as `make bench`
times its latency.

Each round is timed by this process's clock, looking every POLL_SECONDS whether its
tickets are done, the same way for the three (`make bench` reads the rows' own
timestamps, which a replay copies from the recording). The CPU printed is the
workers' own: PostgreSQL's clock also takes in the backends the workers replace
(CONN_MAX_AGE) whenever they exit, which over rounds this short moves it by more
than a kind's difference.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import psycopg
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from agentops.bench.floor import floor_table_create
from agentops.bench.replayed import recording, replay_ticket, save, time_replayed_ticket
from agentops.bench.runner import (
    Latencies,
    Workers,
    floor_tickets_sent,
    machine,
    median_of,
    ms,
    percentile,
    price_like_production,
    tickets_create,
    time_agentops_ticket,
    time_floor_ticket,
    wait_until,
    workload_settings,
)
from agentops.bench.where import PARENT, POOL
from agentops.models import Run

POLL_SECONDS = 0.1
KINDS = ("floor", "agentops' SQL alone", "agentops")
FLOOR, SQL_ALONE, AGENTOPS = KINDS


class Command(BaseCommand):
    help = "The floor, agentops' SQL replayed without agentops' code, and agentops, same run."

    def add_arguments(self, parser):
        parser.add_argument("--tickets", type=int, default=1000, help="tickets per round")
        parser.add_argument("--rounds", type=int, default=3)
        parser.add_argument("--warmup", type=int, default=100)
        parser.add_argument("--latency-tickets", type=int, default=200, help="of each kind")
        parser.add_argument("--processes", type=int, default=2, help="worker processes")

    def handle(self, *args, tickets, rounds, warmup, latency_tickets, processes, **opts):
        if connection.vendor != "postgresql":
            raise CommandError("The benchmark runs on PostgreSQL: set DATABASE_URL.")
        if settings.CELERY_BROKER_URL.startswith("filesystem"):
            raise CommandError("The benchmark needs a real broker: set CELERY_BROKER_URL.")
        if min(tickets, rounds, latency_tickets, processes) < 1 or warmup < 0:
            raise CommandError(
                "--tickets, --rounds, --latency-tickets and --processes take 1 or more, "
                "--warmup 0 or more."
            )
        out = self.stdout.write
        floor_table_create()
        priced = price_like_production()
        per_kind = warmup + rounds * tickets + latency_tickets
        tag = uuid.uuid4().hex[:8]
        warm_up = tickets_create(1, tag=f"{tag}w")[0]
        recorded_runs = tickets_create(per_kind, tag=f"{tag}r")
        agentops_runs = tickets_create(per_kind, tag=f"{tag}a")
        out(machine())
        out(
            f"workload: {tickets} tickets x {rounds} rounds of each kind (median quoted), "
            f"warm-up {warmup}, {processes} worker processes, {priced}; rounds timed by "
            f"this process, looking every {POLL_SECONDS} s"
        )
        original = connection.settings_dict["NAME"]
        copy = f"{original}_sql_alone"
        started = time.monotonic()
        _copy_database(original, copy)
        copied = time.monotonic() - started
        path = Path(settings.VAR_DIR) / f"bench-sql-alone-{tag}.pickle"
        try:
            trips = _record(warm_up, recorded_runs)
            save(path, trips)
            statements = sum(len(s) for s, _ in trips[0])
            out(
                f"recorded here: {len(trips)} tickets, {len(trips[0])} round trips and "
                f"{statements} statements each as sent; replayed on a copy of the database "
                f"taken before they ran (copied in {copied:.1f} s)"
            )
            results, latencies = self._measure(
                copy,
                path,
                (tickets, rounds, warmup, latency_tickets),
                processes,
                recorded_runs,
                agentops_runs,
            )
        finally:
            path.unlink(missing_ok=True)
            path.with_suffix(".stamps").unlink(missing_ok=True)
            _use_database(original)
            _drop_database(copy)
        rates = {kind: median_of(results[kind], "per_second") for kind in KINDS}
        out("")
        out(f"{'':28}" + "".join(f"{kind:>22}" for kind in KINDS))
        out(f"{'tickets/s (median)':28}" + "".join(f"{rates[k]:>22.1f}" for k in KINDS))
        out(
            f"{'ratio to the floor':28}"
            + "".join(f"{rates[k] / rates[FLOOR]:>22.2f}" for k in KINDS)
        )
        count = len(latencies[FLOOR].total)
        out(f"enqueue -> done, one at a time ({count} tickets of each kind, in turn), ms:")
        for label, of, p in (
            ("p50", "total", 50),
            ("p99", "total", 99),
            ("enqueue -> start, p50", "to_claim", 50),
        ):
            out(
                f"  {label:26}"
                + "".join(f"{percentile(getattr(latencies[k], of), p):>22.1f}" for k in KINDS)
            )
        out(
            "  (the start: the floor's first row, the replay task's start, the run's claim; "
            "the end: the floor's last row, the replay's last commit returned, the run's "
            "finished_at, stamped as its last commit is sent)"
        )
        out("CPU per ticket, ms (last round, process clocks):")
        for group in (POOL, PARENT):
            out(
                f"  {group:26}"
                + "".join(f"{ms(results[k][-1]['cpu_ms'][group]):>22}" for k in KINDS)
            )

    def _measure(self, copy, path, counts, processes, recorded, agentops):
        tickets, rounds, warmup, latency_tickets = counts
        _use_database(copy)
        workers = Workers(processes=processes, env={})
        workers.start()
        results = {kind: [] for kind in KINDS}
        try:
            for kind in KINDS:
                _round(kind, workers, 0, warmup, path, recorded, agentops)
            for n in range(rounds):
                first = warmup + n * tickets
                # Each round in another order: no kind always follows the same one.
                for kind in KINDS[n % 3 :] + KINDS[: n % 3]:
                    results[kind].append(
                        _round(kind, workers, first, tickets, path, recorded, agentops)
                    )
                self.stdout.write(
                    f"  round {n + 1}: "
                    + ", ".join(f"{k} {results[k][-1]['per_second']:.1f}/s" for k in KINDS)
                )
            first = warmup + rounds * tickets
            latencies = _latencies(workers.queue, path, first, latency_tickets, recorded, agentops)
        finally:
            workers.stop()
        return results, latencies


def _latencies(queue, path, first, count, recorded, agentops) -> dict[str, Latencies]:
    """Enqueue → done, one ticket at a time, the three kinds in turn (see
    runner.measure_latencies)."""
    latencies = {kind: Latencies() for kind in KINDS}
    floor_base = 2_100_000_000 + int(time.time()) % 10_000_000
    for index in range(first, first + count):
        time_floor_ticket(floor_base + index, queue=queue, into=latencies[FLOOR])
        time_replayed_ticket(path, index, recorded[index], queue=queue, into=latencies[SQL_ALONE])
        time_agentops_ticket(agentops[index], queue=queue, into=latencies[AGENTOPS])
    return latencies


def _record(warm_up: int, run_ids: list[int]) -> list:
    """Each run's round trips, run here with the workers' settings, in order."""
    from agentops.runtime.loop import run_advance

    tickets = []
    with workload_settings():
        # Like a worker past its first ticket: the admin's tables are kept by then.
        run_advance(run_id=warm_up, worker="bench-sql-alone")
        for run_id in run_ids:
            with recording() as trips:
                status = run_advance(run_id=run_id, worker="bench-sql-alone")
            if status != Run.Status.RESOLVED:
                raise CommandError(f"a recorded ticket ended {status}")
            tickets.append(trips)
    return tickets


def _round(kind, workers, first, count, path, recorded, agentops) -> dict:
    """One round of `count` tickets of a kind, enqueued before the workers consume them."""
    queue = f"bench-sql-alone-{uuid.uuid4().hex[:8]}"
    if kind == FLOOR:
        _, done = floor_tickets_sent(count, queue=queue)
    else:
        from agentops.tasks import advance_run

        runs = (recorded if kind == SQL_ALONE else agentops)[first : first + count]
        for index, run_id in enumerate(runs, start=first):
            if kind == SQL_ALONE:
                replay_ticket.apply_async((str(path), index), queue=queue)
            else:
                advance_run.apply_async((run_id,), queue=queue)
        finished = Run.objects.filter(pk__in=runs, status__in=Run.FINAL_STATUSES)

        def done() -> bool:
            return finished.count() == count

    clocks = workers.clocks()
    started = time.monotonic()
    workers.consume(queue)
    wait_until(done, timeout=600, what=f"{count} tickets: {kind}", every=POLL_SECONDS)
    seconds = time.monotonic() - started
    workers.stop_consuming(queue)
    cpu = workers.clocks().minus(clocks)
    if kind != FLOOR:
        unresolved = Run.objects.filter(pk__in=runs).exclude(status=Run.Status.RESOLVED)
        if unresolved.exists():
            raise CommandError(f"{kind}: {unresolved.count()} tickets did not resolve")
    return {
        "per_second": count / seconds,
        "cpu_ms": {g: None if s is None else s * 1000 / count for g, s in cpu.items()},
    }


def _server() -> psycopg.Connection:
    """A connection to the server's maintenance database, to create and drop databases:
    the benchmark's own connection parameters (host or socket, user, OPTIONS such as
    sslmode), another database."""
    params = connection.get_connection_params()
    params.update(dbname="postgres", autocommit=True)
    return psycopg.connect(**params)


def _copy_database(name: str, copy: str) -> None:
    connection.close()  # PostgreSQL copies a database no one is connected to
    with _server() as server:
        server.execute(f'DROP DATABASE IF EXISTS "{copy}"')
        try:
            server.execute(f'CREATE DATABASE "{copy}" TEMPLATE "{name}"')
        except psycopg.errors.ObjectInUse as exc:
            raise CommandError(
                f"PostgreSQL copies {name} only while no one else is connected to it "
                f"(a web server, a worker, psql): {exc}"
            ) from None


def _drop_database(name: str) -> None:
    with _server() as server:
        server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _use_database(name: str) -> None:
    """This process's connection, and the workers it starts (runner.database_url), on `name`."""
    connection.close()
    connection.settings_dict["NAME"] = name
