"""agentops.db.libpq: the hot path's pipelines below psycopg's cursors, on PostgreSQL.

What psycopg's cursors did for the hot path and this module now does itself: prepare
a statement once it has run a few times, never count as prepared what the server did
not make, and leave the connection usable, or closed, after any failure.
"""

import signal

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.db import DatabaseError, ProgrammingError, connection, transaction

from agentops.db import hot
from agentops.db.batch import Statement, execute, query, write_transaction
from agentops.models import Run, Ticket
from agentops.services import new_trace_id

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="libpq is PostgreSQL's"),
    pytest.mark.django_db(transaction=True),
]

READ = 'SELECT "step_count" FROM "agentops_run" WHERE "id" = %s'


@pytest.fixture
def run():
    ticket = Ticket.objects.create(customer_email="ada@example.com", subject="s", body="b")
    return Run.objects.create(ticket=ticket, trace_id=new_trace_id())


def _prepared() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


def _threshold() -> int:
    threshold = connection.connection.prepare_threshold
    assert threshold is not None
    return threshold


def test_a_statement_the_server_dropped_is_sent_again_unprepared_then_prepared_again(run):
    for _ in range(_threshold() + 1):
        query(READ, [run.pk])
    assert 'SELECT "step_count" FROM "agentops_run" WHERE "id" = $1' in _prepared()
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")  # what a pooler's reset does

    assert query(READ, [run.pk]) == [(0,)]
    assert _prepared() == []
    for _ in range(_threshold() + 1):
        assert query(READ, [run.pk]) == [(0,)]
    assert 'SELECT "step_count" FROM "agentops_run" WHERE "id" = $1' in _prepared()


def test_inside_a_transaction_a_dropped_statement_fails_the_write_and_nothing_else(run):
    for i in range(_threshold() + 1):
        with write_transaction():
            hot.update_where(Run, {"step_count": i}, where={"id": run.pk})
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("DEALLOCATE ALL")
        with pytest.raises(DatabaseError, match="does not exist"), write_transaction():
            hot.update_where(Run, {"step_count": 41}, where={"id": run.pk})
        # The outer transaction goes on, and the statement is prepared anew in time.
        for i in range(_threshold() + 2):
            with write_transaction():
                hot.update_where(Run, {"step_count": 50 + i}, where={"id": run.pk})

    run.refresh_from_db()
    assert run.step_count == 50 + _threshold() + 1


def test_a_statement_due_twice_in_one_pipeline_is_prepared_once(run):
    threshold = _threshold()
    for i in range(threshold):
        with write_transaction():
            hot.update_where(Run, {"step_count": i}, where={"id": run.pk})

    with write_transaction():
        hot.update_where(Run, {"step_count": 7}, where={"id": run.pk})
        hot.update_where(Run, {"step_count": 8}, where={"id": run.pk})

    run.refresh_from_db()
    assert run.step_count == 8
    assert [sql for sql in _prepared() if 'SET "step_count"' in sql] == [
        'UPDATE "agentops_run" SET "step_count" = $1 WHERE "id" = $2'
    ]


def test_a_value_that_cannot_be_adapted_raises_before_anything_is_sent(run):
    with pytest.raises(ProgrammingError, match="cannot adapt"), write_transaction():
        hot.update_where(Run, {"step_count": 3}, where={"id": run.pk})
        execute(Statement('UPDATE "agentops_run" SET "reply" = %s', [object()]))

    pid = connection.connection.info.backend_pid
    assert query(READ, [run.pk]) == [(0,)]  # the same connection, usable
    assert connection.connection.info.backend_pid == pid


def test_a_pipeline_interrupted_half_way_closes_the_connection_and_keeps_nothing(run):
    """A time limit (Celery's soft one is a signal) can stop a task while it waits
    for the server: the connection is closed and the next query opens another."""

    def time_is_up(*_):
        raise SoftTimeLimitExceeded()

    pid = query("SELECT pg_backend_pid()", [])[0][0]
    previous = signal.signal(signal.SIGALRM, time_is_up)
    signal.setitimer(signal.ITIMER_REAL, 0.1)
    try:
        with pytest.raises(SoftTimeLimitExceeded), write_transaction():
            hot.update_where(Run, {"step_count": 5}, where={"id": run.pk})
            execute(Statement("SELECT pg_sleep(1)", [], is_select=True))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

    assert connection.connection is None  # Django was told
    assert query("SELECT pg_backend_pid()", [])[0][0] != pid
    assert query(READ, [run.pk]) == [(0,)]  # the update went with the connection
