"""Runs the throughput benchmark: real workers, PostgreSQL, the configured broker.

Workload: one ticket is the standard refund run (model → lookup_order → model →
issue_refund → model → send_reply → model) with the offline model and the
simulated gateway at zero latency, every safeguard on. The offline model is priced
as the model the default route gives these tickets (see price_like_production), so
each call costs what it would in production and the budget's writes and checks are
those of production. The floor is a bare
Celery task doing five single-row INSERTs per ticket. Both are measured in the
same run, on the same database, broker and worker processes.
"""

from __future__ import annotations

import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.db import connection
from django.db.models import Max
from django.test.utils import CaptureQueriesContext, override_settings
from django.utils import timezone

from agentops.bench.floor import TABLE, bench_floor_ticket
from agentops.bench.where import Clocks, children_of
from agentops.db.batch import is_write_transaction, statements_in
from agentops.models import Run, Ticket
from agentops.services import new_trace_id
from agentops.shop.models import Customer, Order

ROOT = Path(__file__).resolve().parents[2]

# The offline model is priced as this one, at its list prices (USD per million tokens:
# input, output, cache read, cache write; as routing's migration 0002 seeds them): the
# model the default route table gives the benchmark's tickets. With the offline model
# at its seeded price of 0, a call cost nothing, so the run's cost never changed and
# the day's spend was never written: the benchmark measured a ticket without the
# writes every priced call makes in production.
PRICED_AS = ("claude-sonnet-4-6", Decimal("3"), Decimal("15"), Decimal("0.30"), Decimal("3.75"))
# With the model priced, the daily cap stays on (each check compares), set where a day
# of benchmarks or chaos runs never reaches it: ~1.6 cents a ticket at PRICED_AS's prices.
PRICED_ENV = {"DAILY_MAX_COST_USD": "1000000"}

# The workload's settings: no model or gateway latency, no injected faults.
WORKLOAD_ENV = {
    "OFFLINE_MODEL_LATENCY_MS": "0",
    "GATEWAY_LATENCY_MS": "0",
    "GATEWAY_TIMEOUT_AFTER_COMMIT": "0",
    "GATEWAY_RATE_LIMIT": "0",
    "GATEWAY_SERVER_ERROR": "0",
    "EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend",
    "LOG_LEVEL": "WARNING",
    **PRICED_ENV,
}


def price_like_production() -> str:
    """Give the offline model PRICED_AS's prices (in the bench database); returns what
    the workload line says about it."""
    from agentops.routing.models import ModelPrice

    name, given, made, cache_read, cache_write = PRICED_AS
    ModelPrice.objects.update_or_create(
        model="offline",
        defaults={
            "input_per_mtok": given,
            "output_per_mtok": made,
            "cache_read_per_mtok": cache_read,
            "cache_write_per_mtok": cache_write,
        },
    )
    return f"the offline model priced as {name} (${given}/${made} per MTok)"


@dataclass
class DbCounters:
    xid: int
    wal_lsn: str
    inserted: int
    updated: int
    deleted: int
    sessions: int

    @classmethod
    def read(cls) -> DbCounters:
        with connection.cursor() as cursor:
            # A transaction gets an id only when it writes: ids consumed = write transactions.
            cursor.execute("SELECT pg_current_xact_id()::text::bigint, pg_current_wal_lsn()::text")
            xid, lsn = cursor.fetchone()
            cursor.execute(
                "SELECT tup_inserted, tup_updated, tup_deleted, sessions FROM pg_stat_database "
                "WHERE datname = current_database()"
            )
            inserted, updated, deleted, sessions = cursor.fetchone()
        return cls(xid, lsn, inserted, updated, deleted, sessions)

    def minus(self, before: DbCounters) -> dict:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_wal_lsn_diff(%s, %s)", [self.wal_lsn, before.wal_lsn])
            wal = int(cursor.fetchone()[0])
        return {
            # Each read of the counters itself consumes one transaction id.
            "write_transactions": self.xid - before.xid - 1,
            "wal_bytes": wal,
            "rows_written": (self.inserted - before.inserted)
            + (self.updated - before.updated)
            + (self.deleted - before.deleted),
            # New PostgreSQL sessions: a worker that reconnects per task shows 1 here.
            "connections": self.sessions - before.sessions,
        }


def machine() -> str:
    """The line that says what a benchmark ran on."""
    return (
        f"machine: {platform.node()} {platform.machine()}, {os.cpu_count() or 0} CPUs, "
        f"Python {platform.python_version()}, "
        f"PostgreSQL {connection.pg_version // 10000}.{connection.pg_version % 100}, "
        f"broker {settings.CELERY_BROKER_URL.split('://')[0]}"
    )


def ms(value: float | None) -> str:
    """Milliseconds as a benchmark prints them; "-" for a clock it could not read."""
    return "-" if value is None else f"{value:.2f}"


def database_url() -> str:
    """The URL of the database this process is connected to (the test database in tests)."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def worker_argv(*, queue: str, concurrency: int, node: str, loglevel: str = "WARNING") -> list[str]:
    """The command line of a Celery worker process on one queue (bench, chaos, tests).

    No gossip, mingle or heartbeat: the workers never need to know of each other, and
    those add broker traffic and start-up time.
    """
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "agentops",
        "worker",
        "-Q",
        queue,
        "--concurrency",
        str(concurrency),
        "--loglevel",
        loglevel,
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-n",
        node,
    ]


@dataclass
class Workers:
    processes: int
    env: dict[str, str]
    queue: str = field(default_factory=lambda: f"bench-{uuid.uuid4().hex[:8]}")
    process: subprocess.Popen | None = None
    log: Path | None = None

    @property
    def node(self) -> str:
        return f"{self.queue}@{socket.gethostname()}"

    def start(self) -> None:
        self.log = Path(settings.VAR_DIR) / f"{self.queue}.log"
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            worker_argv(queue=self.queue, concurrency=self.processes, node=self.node),
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": database_url(), **WORKLOAD_ENV, **self.env},
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited:\n{self.log.read_text()[-2000:]}")
            if len(self.children()) >= self.processes and self._ping():
                return
            time.sleep(0.2)
        raise RuntimeError("workers did not start in 60 s")

    def _ping(self) -> bool:
        from agentops.celery import app

        return bool(app.control.ping(destination=[self.node], timeout=0.5))

    def consume(self, queue: str) -> None:
        """Start consuming a queue that was filled beforehand (remote control, no restart)."""
        from agentops.celery import app

        replies = app.control.add_consumer(queue, destination=[self.node], reply=True, timeout=5)
        if not replies:
            raise RuntimeError(f"the worker did not start consuming {queue}")

    def stop_consuming(self, queue: str) -> None:
        from agentops.celery import app

        app.control.cancel_consumer(queue, destination=[self.node], reply=True, timeout=5)

    def children(self) -> list[int]:
        return children_of(self.process.pid)

    def rss_kib(self) -> list[int]:
        sizes = []
        for pid in self.children():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    sizes.append(int(line.split()[1]))
        return sizes

    def clocks(self) -> Clocks:
        return Clocks.read(parent=self.process.pid, pool=self.children())

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def tickets_create(count: int, *, tag: str) -> list[int]:
    """Orders and tickets for `count` auto-approved refunds; returns the run ids."""
    now = timezone.now()
    first = 5_000_000_000 + Order.objects.count()  # order ids are ORD- and up to 10 digits
    customers = Customer.objects.bulk_create(
        [Customer(email=f"{tag}-{i}@bench.example", name=f"Bench {i}") for i in range(count)]
    )
    orders = Order.objects.bulk_create(
        [
            Order(
                order_id=f"ORD-{first + i}",
                customer=c,
                total_cents=2000,
                currency="USD",
                status=Order.Status.DELIVERED,
                placed_at=now - timedelta(days=3),
                delivered_at=now - timedelta(days=1),
                payment_ref=f"pi_bench_{tag}_{i}",
            )
            for i, c in enumerate(customers)
        ]
    )
    tickets = Ticket.objects.bulk_create(
        [
            Ticket(
                customer_email=o.customer.email,
                subject=f"Refund {o.order_id}",
                body=f"My order {o.order_id} arrived broken. Please refund it.",
                source=Ticket.Source.COMMAND,
            )
            for o in orders
        ]
    )
    runs = Run.objects.bulk_create([Run(ticket=t, trace_id=new_trace_id()) for t in tickets])
    return [r.pk for r in runs]


# How often a throughput round looks whether its tickets are done. The round's time
# comes from the rows' own timestamps, not from when it is seen to end, so a slow look
# costs nothing; a fast one takes CPU from the workers (the agentops look, over a
# thousand ids, costs PostgreSQL ~2.5 ms: 0.66 ms per ticket at 20 looks a second).
ROUND_POLL_SECONDS = 0.5


def wait_until(predicate, timeout: float, what: str, *, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what}")


def _round_queue() -> str:
    return f"bench-round-{uuid.uuid4().hex[:8]}"


def measure_agentops(count: int, *, workers: Workers) -> dict:
    """Throughput of `count` tickets enqueued beforehand, so enqueueing does not pace them."""
    from agentops.tasks import advance_run

    run_ids = tickets_create(count, tag=uuid.uuid4().hex[:8])
    queue = _round_queue()
    for run_id in run_ids:
        advance_run.apply_async((run_id,), queue=queue)
    before, clocks = DbCounters.read(), workers.clocks()
    started = timezone.now()
    workers.consume(queue)
    unfinished = Run.objects.filter(pk__in=run_ids).exclude(status__in=Run.FINAL_STATUSES)
    wait_until(
        lambda: not unfinished.exists(),
        timeout=600,
        what="agentops runs",
        every=ROUND_POLL_SECONDS,
    )
    workers.stop_consuming(queue)
    finished = Run.objects.filter(pk__in=run_ids).aggregate(last=Max("finished_at"))["last"]
    after, cpu = DbCounters.read(), workers.clocks().minus(clocks)
    not_resolved = Run.objects.filter(pk__in=run_ids).exclude(status=Run.Status.RESOLVED).count()
    if not_resolved:
        raise RuntimeError(f"{not_resolved} benchmark runs did not resolve")
    return _round(count, (finished - started).total_seconds(), before, after, cpu)


def floor_tickets_sent(count: int, *, queue: str) -> tuple[int, Callable[[], bool]]:
    """`count` floor tickets enqueued on `queue`: the first one's number, and whether
    all of them are done."""
    base = 1_000_000_000 + int(time.time() * 1000) % 1_000_000_000
    for i in range(count):
        bench_floor_ticket.apply_async((base + i,), queue=queue)

    def done() -> bool:
        with connection.cursor() as cursor:
            # These tickets only: the table keeps the rows of earlier rounds.
            cursor.execute(
                f"SELECT count(*) FROM {TABLE} WHERE ticket >= %s AND ticket < %s",  # noqa: S608
                [base, base + count],
            )
            return cursor.fetchone()[0] >= 5 * count

    return base, done


def measure_floor(count: int, *, workers: Workers) -> dict:
    queue = _round_queue()
    base, done = floor_tickets_sent(count, queue=queue)
    before, clocks = DbCounters.read(), workers.clocks()
    started = timezone.now()
    workers.consume(queue)
    wait_until(done, timeout=600, what="floor tasks", every=ROUND_POLL_SECONDS)
    workers.stop_consuming(queue)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT max(created_at) FROM {TABLE} WHERE ticket >= %s AND ticket < %s",  # noqa: S608
            [base, base + count],
        )
        finished = cursor.fetchone()[0]
    after, cpu = DbCounters.read(), workers.clocks().minus(clocks)
    return _round(count, (finished - started).total_seconds(), before, after, cpu)


def _round(count: int, seconds: float, before: DbCounters, after: DbCounters, cpu: dict) -> dict:
    """A round's figures per ticket, and the WAL positions it ran between."""
    return {
        "tickets": count,
        "seconds": seconds,
        "per_second": count / seconds,
        **{k: v / count for k, v in after.minus(before).items()},
        # CPU milliseconds a ticket by process group (see agentops.bench.where).
        "cpu_ms": {g: None if s is None else s * 1000 / count for g, s in cpu.items()},
        "wal_between": (before.wal_lsn, after.wal_lsn),
    }


_WRITES = ("INSERT", "UPDATE", "DELETE")
# A write in a WITH: WITH changed AS (UPDATE ...) SELECT ... (agentops.db.hot).
_WRITE_IN_WITH = re.compile(r"^WITH\s+\w+\s+AS\s+\(\s*(INSERT|UPDATE|DELETE)\b")


def write_transactions(queries: list[dict]) -> int:
    """Transactions that wrote, from Django's captured queries (BEGIN/COMMIT included).

    A write outside any block is a transaction of its own; an outermost block
    (BEGIN … COMMIT, or SAVEPOINT … RELEASE when the capture itself runs inside a
    transaction, as in a test) counts once if any statement in it wrote or locked
    rows (FOR UPDATE). A query that is a write transaction of its own (several
    statements sent together, see agentops.db.batch) counts once.
    """
    count, depth, wrote = 0, 0, False
    for query in queries:
        sql = query["sql"].lstrip().upper()
        if is_write_transaction(query["sql"].lstrip()):
            # One query holding a whole write transaction (agentops.db.batch).
            if depth:
                wrote = True
            else:
                count += 1
        elif sql.startswith(("BEGIN", "SAVEPOINT")):
            if depth == 0:
                wrote = False
            depth += 1
        elif sql.startswith(("COMMIT", "RELEASE SAVEPOINT")) or sql == "ROLLBACK":
            depth = max(0, depth - 1) if sql.startswith("RELEASE") else 0
            if depth == 0:
                count += wrote
                wrote = False
        elif sql.startswith(_WRITES) or _WRITE_IN_WITH.match(sql) or " FOR UPDATE" in sql:
            if depth:
                wrote = True
            else:
                count += 1
    return count


_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE SAVEPOINT")


def statements(queries: list[dict]) -> int:
    """SQL statements in Django's captured queries, BEGIN, COMMIT and savepoints left out.

    A write transaction sent in one round trip counts its statements (agentops.db.batch):
    the figure is the same whether the writes of a transaction went out together
    (PostgreSQL) or one by one (SQLite).
    """
    return sum(
        statements_in(q["sql"].lstrip())
        for q in queries
        if not q["sql"].lstrip().upper().startswith(_CONTROL)
    )


def workload_settings() -> override_settings:
    """This process's settings as the workers' (WORKLOAD_ENV), for a ticket run here."""
    workload = {k: int(v) for k, v in WORKLOAD_ENV.items() if v.isdigit()}
    mailer = {"default": {"BACKEND": WORKLOAD_ENV["EMAIL_BACKEND"]}}
    return override_settings(MAILERS=mailer, **workload)


def one_ticket_counted() -> dict[str, dict[str, int]]:
    """Queries sent, SQL statements and write transactions of one ticket of each kind,
    counted in this process by Django with the workers' settings.

    Exact, and free of the other databases' traffic on a shared server (the
    transaction id and WAL position the throughput rounds read are server-wide).
    The hot-path test asserts the same figures.
    """
    from agentops.runtime.loop import run_advance

    warm_up, run_id = tickets_create(2, tag=uuid.uuid4().hex[:8])
    with workload_settings():
        # Like a worker past its first ticket: the admin's tables are kept by then.
        run_advance(run_id=warm_up, worker="bench-counted")
        with CaptureQueriesContext(connection) as ours:
            status = run_advance(run_id=run_id, worker="bench-counted")
    if status != Run.Status.RESOLVED:
        raise RuntimeError(f"the counted ticket ended {status}")
    with CaptureQueriesContext(connection) as floor:
        bench_floor_ticket(2_000_000_000 + int(time.time()) % 1_000_000)
    return {
        name: {
            "round_trips": len(q),
            "statements": statements(q.captured_queries),
            "write_transactions": write_transactions(q.captured_queries),
        }
        for name, q in (("agentops", ours), ("floor", floor))
    }


@dataclass
class Latencies:
    """Milliseconds per ticket: enqueue → resolved, and its two parts."""

    total: list[float] = field(default_factory=list)
    # Enqueue → the run claimed by a worker (broker, pool, task start, the claim).
    to_claim: list[float] = field(default_factory=list)
    # Claimed → resolved: the run itself.
    running: list[float] = field(default_factory=list)


def measure_latencies(count: int, *, queue: str) -> tuple[Latencies, Latencies]:
    """Enqueue → done, one ticket at a time, agentops' and the floor's in turn.

    In turn, so that both are timed in the same moments of the machine: on a shared
    VM, a floor measured after agentops' tickets moved by a millisecond between runs.
    """
    ours, floor = Latencies(), Latencies()
    # Ticket numbers of their own (the rounds' are below 2e9, the counted one's just
    # above), within the column's integer.
    base = 2_100_000_000 + int(time.time()) % 10_000_000
    runs = tickets_create(count, tag=uuid.uuid4().hex[:8])
    for ticket, run_id in enumerate(runs, start=base):
        time_agentops_ticket(run_id, queue=queue, into=ours)
        time_floor_ticket(ticket, queue=queue, into=floor)
    return ours, floor


def time_agentops_ticket(run_id: int, *, queue: str, into: Latencies) -> None:
    """Enqueue → resolved. The clock starts as the task is sent (the run's row is
    written before, as a ticket's run is before it is enqueued); the claim and the end
    are the run's own started_at and finished_at, stamped by the worker on the same
    machine."""
    from agentops.tasks import advance_run

    enqueued = timezone.now()
    advance_run.apply_async((run_id,), queue=queue)
    run = Run.objects.filter(pk=run_id)
    wait_until(lambda: run.filter(status__in=Run.FINAL_STATUSES).exists(), 60, "a run")
    started, finished = run.values_list("started_at", "finished_at").get()
    into.total.append((finished - enqueued).total_seconds() * 1000)
    into.to_claim.append((started - enqueued).total_seconds() * 1000)
    into.running.append((finished - started).total_seconds() * 1000)


def time_floor_ticket(ticket: int, *, queue: str, into: Latencies) -> None:
    """The floor's enqueue → its last row, split at its first: what the broker, the pool
    and five autocommit INSERTs take before any agentops code. The rows are stamped by
    the server (clock_timestamp()), on the same machine's clock."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT coalesce(max(id), 0) FROM {TABLE}")  # noqa: S608
        (after,) = cursor.fetchone()
    enqueued = timezone.now()
    bench_floor_ticket.apply_async((ticket,), queue=queue)

    def stamps():
        # By the primary key: the table has no other index, and the floor no index to
        # keep up for the benchmark's sake.
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT count(*), min(created_at), max(created_at) FROM {TABLE} "  # noqa: S608
                "WHERE id > %s AND ticket = %s",
                [after, ticket],
            )
            return cursor.fetchone()

    wait_until(lambda: stamps()[0] >= 5, 60, "a floor ticket")
    _, first, last = stamps()
    into.total.append((last - enqueued).total_seconds() * 1000)
    into.to_claim.append((first - enqueued).total_seconds() * 1000)
    into.running.append((last - first).total_seconds() * 1000)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def median_of(rounds: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rounds)
