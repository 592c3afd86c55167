"""The benchmark command: it refuses what it cannot measure, and prints every figure."""

import os
import time
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection

from agentops.bench.runner import database_url, write_transactions
from agentops.bench.where import (
    OURS,
    PARENT,
    POOL,
    SERVER,
    Clocks,
    wal_by_table,
    walinspect_enable,
)
from agentops.models import Run
from agentops.routing.models import DailySpend


def _real_services() -> bool:
    return connection.vendor == "postgresql" and not settings.CELERY_BROKER_URL.startswith(
        "filesystem"
    )


@pytest.mark.django_db
def test_it_refuses_to_measure_on_the_embedded_defaults():
    if _real_services():
        pytest.skip("runs on the embedded defaults only; the PostgreSQL pass runs the bench")
    with pytest.raises(CommandError, match="PostgreSQL|real broker"):
        call_command("bench", tickets=1, rounds=1)


@pytest.mark.django_db(transaction=True)
def test_it_prints_throughput_latency_writes_and_memory_against_the_floor(capsys):
    if not _real_services():
        pytest.skip("the benchmark needs PostgreSQL and a real broker (the CI's second pass)")
    call_command("bench", tickets=5, rounds=1, warmup=2, latency_tickets=3, rss_tickets=12)

    out = capsys.readouterr().out
    assert "over 12 agentops tickets" in out  # 5 + 3, then a batch of 4 more
    # Each model call cost money, as in production: the runs' costs and the day's spend.
    assert "the offline model priced as claude-sonnet-4-6 ($3/$15 per MTok)" in out
    resolved = Run.objects.filter(status=Run.Status.RESOLVED)
    assert resolved.count() >= 12 and not resolved.filter(cost=0).exists()
    spent = sum(day.cost for day in DailySpend.objects.all())  # a midnight may fall inside
    assert spent == sum(run.cost for run in Run.objects.all())
    for figure in (
        "tickets/s (median)",
        "ratio agentops / floor",
        "write transactions / ticket",
        "WAL bytes / ticket",
        "new connections / ticket",
        "queries sent (round trips)",
        "statements (no BEGIN/COMMIT)",
        "write transactions",
        "enqueue -> resolved",
        "enqueue -> claimed",
        "the floor, the same way: p50",
        "worker RSS",
        "database before the run:",
        "CPU per ticket",
        "worker pool processes",
        "PostgreSQL, all its processes",
    ):
        assert figure in out
    if walinspect_enable() is None:
        wal = out.split("WAL bytes per ticket by table")[1]
        assert "traces_span" in wal and "agentops_run" in wal
        assert "without full pages" in wal.split("all tables")[1]
    else:
        assert "WAL per ticket by table: unavailable" in out


def _walinspect_or_skip() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("pg_walinspect is PostgreSQL's")
    if (missing := walinspect_enable()) is not None:
        pytest.skip(missing)


def _wal_position(which: str = "lsn") -> str:
    """pg_current_wal_lsn (written) or pg_current_wal_insert_lsn (inserted)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT pg_current_wal_{which}()::text")  # noqa: S608 - ours
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_the_wal_of_a_write_is_put_on_its_table_and_its_indexes():
    _walinspect_or_skip()
    from agentops.models import Ticket

    start = _wal_position()
    Ticket.objects.bulk_create(
        [Ticket(customer_email=f"wal{i}@example.com", subject="s", body="b") for i in range(50)]
    )
    tables = {t.table: t for t in wal_by_table(start, _wal_position())}
    assert tables["agentops_ticket"].heap > 50 * 40  # fifty rows of the table
    assert tables["agentops_ticket"].indexes > 0  # its primary key and code, at least


@pytest.mark.django_db(transaction=True)
def test_the_wal_of_commits_not_flushed_yet_is_read_too():
    """A round ends with runs' progress commits, which do not wait for the WAL flush: the
    round's last position may be past the flushed WAL when its tables are read."""
    _walinspect_or_skip()
    from agentops.models import Ticket

    start = _wal_position("insert_lsn")
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit = off")
    try:
        late = [Ticket(customer_email=f"late{i}@example.com", subject="s") for i in range(20)]
        Ticket.objects.bulk_create(late)
        end = _wal_position("insert_lsn")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET synchronous_commit")
    tables = {t.table: t for t in wal_by_table(start, end)}
    assert tables["agentops_ticket"].heap > 20 * 40


@pytest.mark.django_db
def test_the_server_clock_counts_a_backend_that_exited_during_the_round():
    """A worker's connection replaced mid-round (CONN_MAX_AGE) still counts: its time is
    in the postmaster's reaped-children clocks once it has exited."""
    if connection.vendor != "postgresql":
        pytest.skip("the server clock is PostgreSQL's")
    before = Clocks.read(parent=os.getpid(), pool=[])
    if not before.server_seen:
        pytest.skip("PostgreSQL's processes are not on this host")
    other = psycopg.connect(database_url().replace("postgres://", "postgresql://", 1))
    (pid,) = other.execute("SELECT pg_backend_pid()").fetchone()
    other.execute("SELECT sum(i) FROM generate_series(1, 8000000) AS i").fetchone()
    other.close()
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # until the postmaster has reaped it (a zombie is still listed)
    assert not Path(f"/proc/{pid}").exists()
    spent = Clocks.read(parent=os.getpid(), pool=[]).minus(before)

    assert spent[SERVER] >= 0.2  # the exited backend's sum, a few tenths of a second
    assert spent[OURS] < 0.1  # ours only read the clock


def test_clocks_count_a_new_process_from_zero_and_hidden_backends_as_unknown():
    before = Clocks({POOL: {1: 2.0}, PARENT: {9: 1.0}, SERVER: {}, OURS: {}}, True)
    after = Clocks({POOL: {1: 2.5, 2: 0.25}, PARENT: {9: 1.5}, SERVER: {7: 3.0}, OURS: {}}, True)
    assert after.minus(before) == {POOL: 0.75, PARENT: 0.5, SERVER: 3.0, OURS: 0}

    remote = Clocks({POOL: {1: 3.0}, PARENT: {9: 1.0}, SERVER: {}, OURS: {}}, False)
    spent = remote.minus(before)
    assert spent[POOL] == 1.0
    assert spent[SERVER] is None and spent[OURS] is None


def _queries(*sql: str) -> list[dict]:
    return [{"sql": s, "time": "0.000"} for s in sql]


def test_it_counts_a_transaction_once_however_many_rows_it_writes():
    queries = _queries(
        "BEGIN",
        'UPDATE "agentops_run" SET x = 1',
        'INSERT INTO "traces_span" VALUES (1)',
        "SAVEPOINT s1",
        'INSERT INTO "agentops_effect" VALUES (1)',
        "RELEASE SAVEPOINT s1",
        "COMMIT",
    )
    assert write_transactions(queries) == 1


def test_it_counts_each_autocommit_write_and_no_read_only_transaction():
    queries = _queries(
        'UPDATE "agentops_run" SET x = 1',
        'SELECT 1 FROM "agentops_run"',
        "BEGIN",
        'SELECT 1 FROM "agentops_run"',
        "COMMIT",
        'INSERT INTO "traces_span" VALUES (1)',
        "BEGIN",
        'SELECT 1 FROM "agentops_run" FOR UPDATE',
        "COMMIT",
    )
    assert write_transactions(queries) == 3


def test_it_counts_a_write_in_a_with_and_not_a_read_only_with():
    queries = _queries(
        'WITH changed AS (UPDATE "agentops_run" SET x = 1 RETURNING *) SELECT * FROM changed',
        'WITH recent AS (SELECT "updated_at" FROM "agentops_run") SELECT * FROM recent',
    )
    assert write_transactions(queries) == 1


def test_inside_a_test_transaction_an_outermost_savepoint_is_a_transaction():
    queries = _queries(
        "SAVEPOINT s1",
        'UPDATE "agentops_run" SET x = 1',
        "SAVEPOINT s2",
        'INSERT INTO "agentops_effect" VALUES (1)',
        "ROLLBACK TO SAVEPOINT s2",
        "RELEASE SAVEPOINT s2",
        "RELEASE SAVEPOINT s1",
        "SAVEPOINT s3",
        'SELECT 1 FROM "agentops_run"',
        "RELEASE SAVEPOINT s3",
    )
    assert write_transactions(queries) == 1


@pytest.mark.django_db(transaction=True)
def test_without_full_pages_counts_the_changes_a_page_image_carried():
    """After a checkpoint the first change of a page logs the page whole, and the record
    leaves out the row the image holds: its length less the image undercounts it."""
    _walinspect_or_skip()
    from agentops.models import Ticket

    Ticket.objects.bulk_create(
        [Ticket(customer_email=f"fpi{i}@example.com", subject="s") for i in range(40)]
    )
    with connection.cursor() as cursor:
        cursor.execute("CHECKPOINT")
    start = _wal_position("insert_lsn")
    for ticket in Ticket.objects.filter(customer_email__startswith="fpi"):
        Ticket.objects.filter(pk=ticket.pk).update(subject="t" * 50)
    tables = {t.table: t for t in wal_by_table(start, _wal_position("insert_lsn"))}
    ticket = tables["agentops_ticket"]
    assert ticket.full_pages > 0  # the first update of each page after the checkpoint
    assert ticket.without_full_pages > ticket.total - ticket.full_pages
    assert ticket.without_full_pages < ticket.total
