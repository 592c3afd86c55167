"""One process running tickets back to back, measured: the child of bench_compare.

Run as a script, `python -P alone.py TICKETS WARMUP`, with the tree under test as
the working directory and first on PYTHONPATH, so that everything it imports is
that tree's: a commit before this file existed is measured the same way. It
imports only what every tree since issue 8's twelfth round has (the benchmark's
ticket factory, pricing and query counts, and the loop's run_advance).

It prints one JSON object: per ticket, this process's CPU, its PostgreSQL
backend's CPU (when the server runs on this host), the wall time, the WAL (with
and without full-page images: a CHECKPOINT comes first, so each run starts with the
same pages to log whole), and the queries one ticket sends, counted as the
benchmark counts them.
"""

import json
import os
import sys
import time
from pathlib import Path

import django

WORKER = "bench-compare"


def _cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _scalar(sql: str, params=()):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


def _backend() -> int | None:
    """Our backend's pid, if it is a process of this host."""
    pid = _scalar("SELECT pg_backend_pid()")
    try:
        return pid if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"postgres") else None
    except OSError:
        return None


def _wal_without_full_pages(start: str, end: str) -> int | None:
    """The WAL's records between two positions, their full-page images left out; None
    without pg_walinspect (bench_compare creates it)."""
    if not _scalar("SELECT count(*) FROM pg_extension WHERE extname = 'pg_walinspect'"):
        return None
    deadline = time.monotonic() + 10  # it reads only flushed WAL (see bench.where)
    while not _scalar("SELECT pg_current_wal_flush_lsn() >= %s::pg_lsn", [end]):
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)
    return int(
        _scalar(
            "SELECT sum(record_size) FROM pg_get_wal_stats(%s::pg_lsn, %s::pg_lsn)", [start, end]
        )
    )


def _counted(queries: list[dict]) -> dict[str, int]:
    """As `make bench` counts one ticket (the tree's own counting)."""
    from agentops.bench.runner import statements, write_transactions

    return {
        "round_trips": len(queries),
        "statements": statements(queries),
        "write_transactions": write_transactions(queries),
    }


def main(tickets: int, warmup: int) -> dict:
    django.setup()
    from django.db import DatabaseError, connection
    from django.test.utils import CaptureQueriesContext

    from agentops.bench.runner import price_like_production, tickets_create
    from agentops.models import Run
    from agentops.runtime.loop import run_advance

    price_like_production()
    tag = f"compare-{os.getpid()}-{time.time_ns()}"
    warm = tickets_create(warmup + 1, tag=f"{tag}-w")
    for run_id in warm[:-1]:
        run_advance(run_id=run_id, worker=WORKER)
    with CaptureQueriesContext(connection) as queries:
        run_advance(run_id=warm[-1], worker=WORKER)
    runs = tickets_create(tickets, tag=tag)
    try:
        with connection.cursor() as cursor:
            cursor.execute("CHECKPOINT")
    except DatabaseError:
        pass  # not allowed (a superuser's or pg_checkpoint's): full-page images vary more
    backend = _backend()
    start = _scalar("SELECT pg_current_wal_insert_lsn()::text")
    cpu, server, wall = time.process_time(), _cpu_seconds(backend or 0), time.perf_counter()
    for run_id in runs:
        run_advance(run_id=run_id, worker=WORKER)
    wall = time.perf_counter() - wall
    cpu = time.process_time() - cpu
    server_after = _cpu_seconds(backend or 0)
    end = _scalar("SELECT pg_current_wal_insert_lsn()::text")
    resolved = Run.objects.filter(pk__in=runs, status=Run.Status.RESOLVED).count()
    if resolved != tickets:
        raise SystemExit(f"{tickets - resolved} of {tickets} tickets did not resolve")
    wal = int(_scalar("SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)", [end, start]))
    plain = _wal_without_full_pages(start, end)
    return {
        "python_ms": 1000 * cpu / tickets,
        "backend_ms": (
            None
            if backend is None or server is None or server_after is None
            else 1000 * (server_after - server) / tickets
        ),
        "wall_ms": 1000 * wall / tickets,
        "wal_bytes": wal / tickets,
        "wal_bytes_without_full_pages": None if plain is None else plain / tickets,
        **_counted(queries.captured_queries),
    }


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]), int(sys.argv[2]))))
