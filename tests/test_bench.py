"""The benchmark command: it refuses what it cannot measure, and prints every figure."""

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection

from agentops.bench.runner import write_transactions


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
        "worker RSS",
    ):
        assert figure in out


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
