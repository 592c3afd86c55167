"""agentops.db.hot writes and reads what the ORM would, on SQLite and PostgreSQL.

Inside agentops.db.batch.write_transaction() its writes go out together, all or
nothing: on PostgreSQL in one pipeline (one Sync: one transaction), prepared once
they have run a few times, on SQLite one by one inside atomic(). Both keep nothing
of a transaction whose statement failed, whether the failure is the database's (a
duplicate key) or an expected row count that did not hold (the lease fence).
"""

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.db import DataError, IntegrityError, OperationalError, connection, transaction
from django.db.models import CharField, DecimalField
from django.db.models.expressions import RawSQL
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agentops.bench.runner import statements, write_transactions
from agentops.db import hot
from agentops.db.batch import Statement, execute, write_transaction
from agentops.models import Effect, Run, Ticket
from agentops.routing.models import DailySpend
from agentops.services import new_trace_id
from traces.models import Span

pytestmark = pytest.mark.django_db


@pytest.fixture
def run():
    ticket = Ticket.objects.create(customer_email="ada@example.com", subject="s", body="b")
    return Run.objects.create(ticket=ticket, trace_id=new_trace_id())


def _span(run, span_id, **fields):
    return Span(
        run=run,
        span_id=span_id,
        kind=Span.Kind.MODEL,
        name="messages.create",
        started_at=timezone.now(),
        **fields,
    )


def test_insert_many_stores_every_column_as_the_orm_reads_it_back(run):
    spans = [
        _span(
            run,
            "a" * 16,
            input={"messages": [{"role": "user", "content": "héllo \\u2603"}]},
            output=None,
            attributes={"nested": {"list": [1, 2.5, None, True]}},
            cost=Decimal("0.001234"),
            input_tokens=7,
        ),
        _span(run, "b" * 16, input=None, attributes={}),
    ]

    hot.insert_many(spans)

    assert all(s.pk for s in spans) and not spans[0]._state.adding
    first, second = (Span.objects.get(pk=s.pk) for s in spans)
    assert first.span_id == "a" * 16 and second.span_id == "b" * 16
    assert first.input == {"messages": [{"role": "user", "content": "héllo \\u2603"}]}
    assert first.output is None and second.input is None
    assert first.attributes == {"nested": {"list": [1, 2.5, None, True]}}
    assert first.cost == Decimal("0.001234") and first.input_tokens == 7
    assert first.started_at == spans[0].started_at
    assert first.status == Span.Status.STARTED  # the field's default


def test_save_fields_updates_a_saved_row(run):
    span = _span(run, "c" * 16, input={"a": 1})
    hot.insert_many([span])
    span.status, span.output, span.ended_at = Span.Status.OK, {"done": True}, timezone.now()

    hot.save_fields(span)

    stored = Span.objects.get(pk=span.pk)
    assert (stored.status, stored.output, stored.ended_at) == (
        Span.Status.OK,
        {"done": True},
        span.ended_at,
    )


def test_save_fields_with_names_updates_those_columns_only(run):
    span = _span(run, "d" * 16, input={"a": 1})
    hot.insert_many([span])
    span.status, span.input = Span.Status.OK, {"changed": "in memory only"}

    with CaptureQueriesContext(connection) as queries:
        hot.save_fields(span, ["status"])

    stored = Span.objects.get(pk=span.pk)
    assert (stored.status, stored.input) == (Span.Status.OK, {"a": 1})
    assert '"input"' not in queries.captured_queries[-1]["sql"]


def test_update_where_matches_equalities_and_is_null(run):
    later = timezone.now() + timedelta(minutes=2)
    held = {"id": run.pk, "lease_owner": "w1", "status": Run.Status.RUNNING}
    assert hot.update_where(Run, {"step_count": 3}, where=held) == 0  # not held: nothing

    Run.objects.filter(pk=run.pk).update(lease_owner="w1", status=Run.Status.RUNNING)
    assert hot.update_where(Run, {"step_count": 3, "lease_expires_at": later}, where=held) == 1
    assert hot.update_where(Run, {"step_count": 4}, where={"id": run.pk, "finished_at": None}) == 1

    run.refresh_from_db()
    assert (run.step_count, run.lease_expires_at) == (4, later)


def test_value_where_converts_as_the_orm_does():
    DailySpend.objects.create(day=date(2026, 1, 2), cost=Decimal("1.250000"))

    cost = hot.value_where(DailySpend, "cost", {"day": date(2026, 1, 2)})

    assert cost == Decimal("1.25") and isinstance(cost, Decimal)
    assert hot.value_where(DailySpend, "cost", {"day": date(2026, 1, 3)}) is None


def _effect(run, key, **fields):
    return Effect.objects.create(
        idempotency_key=key,
        ticket=run.ticket,
        run=run,
        tool="issue_refund",
        request={"order_id": "ORD-1"},
        request_hash="h",
        **fields,
    )


def test_instance_where_makes_the_row_as_the_orm_does(run):
    _effect(run, "k-1", result={"amount_cents": 2000, "nested": [1.5, None]}, attempts=2)

    got = hot.instance_where(Effect, {"idempotency_key": "k-1"})

    orm = Effect.objects.get(idempotency_key="k-1")
    fields = [f.attname for f in Effect._meta.concrete_fields]
    assert [getattr(got, f) for f in fields] == [getattr(orm, f) for f in fields]
    assert got.result == {"amount_cents": 2000, "nested": [1.5, None]} and not got._state.adding
    assert hot.instance_where(Effect, {"idempotency_key": "k-2"}) is None


def test_values_where_reads_a_column_of_every_matching_row(run):
    _effect(run, "k-1", result={"amount_cents": 1}, status=Effect.Status.SUCCEEDED)
    _effect(run, "k-2", result=None, status=Effect.Status.SUCCEEDED)
    _effect(run, "k-3", result={"amount_cents": 3}, status=Effect.Status.FAILED)

    got = hot.values_where(
        Effect, "result", {"ticket_id": run.ticket_id, "status": Effect.Status.SUCCEEDED}
    )

    assert sorted(got, key=str) == [None, {"amount_cents": 1}]


def _claim_values(now):
    return {"status": Run.Status.RUNNING, "lease_owner": "w", "updated_at": now, "started_at": now}


def test_update_and_get_reads_back_what_the_orm_reads(run):
    run.triage = {"route": "offline", "amount": [1, 2.5, None]}
    run.cost = Decimal("0.001234")
    run.save()
    now = timezone.now()

    got = hot.update_and_get(
        Run,
        _claim_values(now),
        {"id": run.pk, "status": Run.Status.QUEUED},
        unless_set=("started_at",),
        related=("ticket", "prompt_version"),
        columns={
            "config_token": RawSQL("SELECT %s", ["token-1"], output_field=CharField()),
            "day_spend": RawSQL("SELECT 1.5", [], output_field=DecimalField()),
        },
    )

    orm = Run.objects.select_related("ticket", "prompt_version").get(pk=run.pk)
    fields = [f.attname for f in Run._meta.concrete_fields]
    assert [getattr(got, f) for f in fields] == [getattr(orm, f) for f in fields]
    assert (got.status, got.lease_owner, got.started_at) == (Run.Status.RUNNING, "w", now)
    assert got.cost == Decimal("0.001234") and got.triage["amount"] == [1, 2.5, None]
    assert (got.config_token, got.day_spend) == ("token-1", Decimal("1.5"))
    assert not got._state.adding
    # The related rows come with it: no query when they are used.
    with CaptureQueriesContext(connection) as queries:
        assert got.ticket.pk == run.ticket_id and got.ticket.subject == "s"
        assert got.prompt_version is None  # a nullable key with no row: a LEFT JOIN
    assert len(queries) == 0


def test_update_and_get_keeps_a_set_value_and_returns_none_when_nothing_matches(run):
    started = timezone.now() - timedelta(hours=1)
    Run.objects.filter(pk=run.pk).update(started_at=started)

    got = hot.update_and_get(
        Run,
        _claim_values(timezone.now()),
        {"id": run.pk, "status": Run.Status.QUEUED},
        unless_set=("started_at",),
    )
    assert got.started_at == started  # COALESCE: the first claim's stamp stays

    assert (
        hot.update_and_get(
            Run, _claim_values(timezone.now()), {"id": run.pk, "status": Run.Status.QUEUED}
        )
        is None
    )
    assert Run.objects.get(pk=run.pk).lease_owner == "w"


def test_update_and_get_is_one_statement_on_postgresql(run):
    with CaptureQueriesContext(connection) as queries:
        hot.update_and_get(
            Run,
            _claim_values(timezone.now()),
            {"id": run.pk},
            related=("ticket",),
            columns={"config_token": RawSQL("SELECT 'x'", [], output_field=CharField())},
        )
    assert len(queries) == (1 if connection.vendor == "postgresql" else 2)


def test_update_where_takes_a_tuple_as_in(run):
    where = {"id": run.pk, "status": (Run.Status.RUNNING, Run.Status.QUEUED)}
    assert hot.update_where(Run, {"step_count": 5}, where=where) == 1
    where = {"id": run.pk, "status": (Run.Status.RUNNING, Run.Status.RESOLVED)}
    assert hot.update_where(Run, {"step_count": 6}, where=where) == 0

    run.refresh_from_db()
    assert run.status == Run.Status.QUEUED and run.step_count == 5


class Gone(Exception):
    pass


def test_lock_one_locks_the_row_or_raises(run):
    with transaction.atomic():
        hot.lock_one(Run, {"id": run.pk, "status": Run.Status.QUEUED}, or_raise=Gone)
        hot.lock_one(Run, {"id": run.pk, "finished_at": None}, or_raise=Gone)
        with pytest.raises(Gone):
            hot.lock_one(Run, {"id": run.pk, "status": Run.Status.RUNNING}, or_raise=Gone)


def test_update_where_raises_when_it_must_change_one_row_and_changes_none(run):
    held = {"id": run.pk, "status": Run.Status.RUNNING}

    with pytest.raises(Gone):
        hot.update_where(Run, {"step_count": 3}, where=held, or_raise=Gone)
    assert hot.update_where(Run, {"step_count": 3}, where={"id": run.pk}, or_raise=Gone) == 1


def test_spend_record_creates_the_days_row_then_adds_to_it():
    from agentops.runtime.budget import spend_record

    spend_record(cost=Decimal("0.25"), day=date(2026, 2, 1))
    spend_record(cost=Decimal("0.125"), day=date(2026, 2, 1))
    spend_record(cost=Decimal(0), day=date(2026, 2, 1))  # free: nothing written

    assert DailySpend.objects.get(day=date(2026, 2, 1)).cost == Decimal("0.375")


def test_each_process_adds_to_its_shard_and_a_day_s_spend_adds_them_up(monkeypatch):
    """Two workers' transactions do not wait for each other on one row of the day's."""
    from agentops.runtime import budget

    today = budget._utc_day()
    for shard, cost in [(3, "0.25"), (7, "0.125"), (3, "0.5")]:
        monkeypatch.setattr(budget, "spend_shard", lambda shard=shard: shard)
        budget.spend_record(cost=Decimal(cost))
    budget.spend_record(cost=Decimal("9"), day=date(2026, 2, 1))  # another day

    rows = DailySpend.objects.filter(day=today).values_list("shard", "cost")
    assert sorted(rows) == [(3, Decimal("0.75")), (7, Decimal("0.125"))]
    assert budget.day_spend() == Decimal("0.875")
    assert budget.day_spend(day=date(2020, 1, 1)) == 0  # no row: SUM says NULL
    read = []
    with write_transaction():
        budget.day_spend_read(on_read=read.append)
    assert read == [Decimal("0.875")]
    claimed = Run.objects.annotate(spent=budget.day_spend_column()).values_list("spent")
    Run.objects.create(ticket=Ticket.objects.create(customer_email="a@example.com"))
    assert claimed.get() == (Decimal("0.875"),)
    assert 0 <= budget.spend_shard() < budget.DAY_SPEND_SHARDS


# --- write transactions (agentops.db.batch) ---------------------------------------


def _step(run, *, held: dict, span_ids=("a" * 16, "b" * 16)) -> list[Span]:
    spans = [_span(run, span_id) for span_id in span_ids]
    hot.update_where(Run, {"step_count": 1}, where=held, or_raise=Gone)
    hot.insert_many(spans)
    hot.update_where(Run, {"model_calls": 1}, where={"id": run.pk})
    return spans


def test_the_writes_of_a_transaction_go_out_together_and_land_together(run):
    with CaptureQueriesContext(connection) as queries, write_transaction():
        spans = _step(run, held={"id": run.pk, "status": Run.Status.QUEUED})
        assert all(s.pk is None for s in spans)  # not sent yet

    run.refresh_from_db()
    assert (run.step_count, run.model_calls) == (1, 1)
    assert [s.pk for s in spans] == list(
        Span.objects.filter(run=run).order_by("span_id").values_list("pk", flat=True)
    )
    assert statements(queries.captured_queries) == 3
    assert write_transactions(queries.captured_queries) == 1
    if connection.vendor == "postgresql":
        assert len(queries) == 1  # one round trip, BEGIN and COMMIT included


def test_a_failed_fence_keeps_nothing_of_the_transaction(run):
    with pytest.raises(Gone), write_transaction():
        _step(run, held={"id": run.pk, "status": Run.Status.RUNNING})  # not held

    run.refresh_from_db()
    assert (run.step_count, run.model_calls) == (0, 0)
    assert not Span.objects.filter(run=run).exists()


def _ledger_row(run, key: str) -> Effect:
    return Effect(
        idempotency_key=key,
        ticket=run.ticket,
        run=run,
        tool="issue_refund",
        request={},
        request_hash="h",
    )


def test_a_duplicate_key_keeps_nothing_of_the_transaction(run):
    hot.insert_many([_ledger_row(run, "refund:1")])

    with pytest.raises(IntegrityError), write_transaction():
        _step(run, held={"id": run.pk})
        hot.insert_many([_ledger_row(run, "refund:1")])

    run.refresh_from_db()
    assert (run.step_count, run.model_calls) == (0, 0)
    assert not Span.objects.filter(run=run).exists()
    assert Effect.objects.filter(run=run).count() == 1


def test_a_block_that_raises_sends_nothing(run):
    with (
        CaptureQueriesContext(connection) as queries,
        pytest.raises(RuntimeError),
        write_transaction(),
    ):
        _step(run, held={"id": run.pk})
        raise RuntimeError("changed my mind")

    assert len(queries) == 0
    assert not Span.objects.filter(run=run).exists()


def test_nested_blocks_join_the_outermost(run):
    with CaptureQueriesContext(connection) as queries, write_transaction():
        with write_transaction():
            hot.update_where(Run, {"step_count": 2}, where={"id": run.pk})
        assert Run.objects.get(pk=run.pk).step_count == 0  # still waiting for the outer block
        hot.update_where(Run, {"model_calls": 2}, where={"id": run.pk})

    run.refresh_from_db()
    assert (run.step_count, run.model_calls) == (2, 2)
    assert write_transactions(queries.captured_queries) == 1


def test_inside_an_atomic_block_a_failed_transaction_leaves_the_outer_one_usable(run):
    with transaction.atomic():
        with pytest.raises(Gone), write_transaction():
            _step(run, held={"id": run.pk, "status": Run.Status.RUNNING})
        # The outer transaction goes on: its own writes land.
        hot.update_where(Run, {"step_count": 7}, where={"id": run.pk})

    run.refresh_from_db()
    assert (run.step_count, run.model_calls) == (7, 0)
    assert not Span.objects.filter(run=run).exists()


postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="pipelines and prepared statements are PostgreSQL's"
)


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_outside_any_transaction_a_failed_pipeline_keeps_nothing(run):
    # No atomic block: the pipeline's own implicit transaction is all there is.
    assert not connection.in_atomic_block
    with pytest.raises(Gone), write_transaction():
        _step(run, held={"id": run.pk, "status": Run.Status.RUNNING})  # not held

    run.refresh_from_db()
    assert (run.step_count, run.model_calls) == (0, 0)
    assert not Span.objects.filter(run=run).exists()
    assert not connection.in_atomic_block  # and the connection is usable
    assert Run.objects.filter(pk=run.pk).exists()


def _prepared_statements() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return {row[0] for row in cursor.fetchall()}


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_write_transaction_is_prepared_once_it_has_run_a_few_times(run):
    threshold = connection.connection.prepare_threshold
    assert threshold is not None
    for i in range(threshold + 1):
        with write_transaction():
            hot.update_where(Run, {"step_count": i}, where={"id": run.pk})
            hot.update_where(Run, {"model_calls": i}, where={"id": run.pk})

    assert any('SET "step_count"' in sql for sql in _prepared_statements())
    run.refresh_from_db()
    assert (run.step_count, run.model_calls) == (threshold, threshold)


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_statement_prepared_in_a_failed_pipeline_runs_again_afterwards(run):
    # A pipeline whose first statement fails once the second is queued: the server
    # skips the second, and its preparation there (the run after its threshold).
    # Counted as prepared, its next run would name a statement the server never made
    # ("prepared statement ... does not exist"), and go out again unprepared.
    threshold = connection.connection.prepare_threshold
    for i in range(threshold):  # prepared on its next run, once it ran this many times
        with write_transaction():
            hot.update_where(Run, {"step_count": i}, where={"id": run.pk})
    with pytest.raises(DataError), write_transaction():
        # Fails after 0.2 s: the update is queued behind it by then.
        execute(Statement("SELECT 1 / 0 FROM pg_sleep(0.2)", [], is_select=True))
        hot.update_where(Run, {"step_count": 41}, where={"id": run.pk})

    with write_transaction():
        hot.update_where(Run, {"step_count": 42}, where={"id": run.pk})

    run.refresh_from_db()
    assert run.step_count == 42
    # Prepared by that run: it was still due, not taken to be prepared already.
    assert 'UPDATE "agentops_run" SET "step_count" = $1 WHERE "id" = $2' in _prepared_statements()


@postgresql_only
def test_a_pipeline_runs_inside_the_connections_execute_wrappers_as_one_query(run):
    seen = []

    def wrapper(execute, sql, params, many, context):
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper), write_transaction():
        _step(run, held={"id": run.pk})

    assert len(seen) == 1
    assert statements([{"sql": seen[0]}]) == 3


def test_a_batched_statement_gets_postgresqls_own_placeholders():
    from agentops.db.batch import _numbered

    assert _numbered("UPDATE t SET a = %s, b = %s WHERE c LIKE 'x%%' AND d = %s") == (
        "UPDATE t SET a = $1, b = $2 WHERE c LIKE 'x%' AND d = $3"
    )
    with pytest.raises(ValueError, match="only %s and %% are placeholders"):
        _numbered("SELECT %(name)s")


@postgresql_only
def test_a_statement_of_many_parameters_is_converted_once_per_text(run):
    """psycopg's own cursor would parse a 6-span INSERT (144 parameters) every time."""
    from agentops.db.batch import _numbered

    _numbered.cache_clear()
    for n in range(3):
        with write_transaction():
            hot.insert_many([_span(run, f"{n:02d}{i:014x}") for i in range(6)])

    assert Span.objects.filter(run=run).count() == 18
    assert (_numbered.cache_info().misses, _numbered.cache_info().hits) == (1, 2)


def test_a_query_returns_its_rows_and_is_logged_as_one_query(run):
    from agentops.db.batch import query

    read = 'SELECT "step_count", "trace_id" FROM "agentops_run" WHERE "id" = %s'
    write = 'UPDATE "agentops_run" SET "step_count" = %s WHERE "id" = %s'
    with CaptureQueriesContext(connection) as queries:
        rows = query(read, [run.pk])
        none = query(write, [3, run.pk])

    assert rows == [(0, run.trace_id)] and none == []
    logged = [q["sql"] for q in queries.captured_queries]
    # One logged query each (on SQLite, Django's cursor logs the values in place).
    assert [sql.split()[0] for sql in logged] == ["SELECT", "UPDATE"]
    if connection.vendor == "postgresql":
        assert logged == [read, write]
    assert statements(queries.captured_queries) == 2
    assert write_transactions(queries.captured_queries) == 1
    run.refresh_from_db()
    assert run.step_count == 3


def test_a_query_raises_djangos_errors(run):
    from agentops.db.batch import query

    with pytest.raises(IntegrityError), transaction.atomic():
        query(
            'INSERT INTO "agentops_run" ("code", "ticket_id", "trace_id") '
            'SELECT "code", "ticket_id", "trace_id" FROM "agentops_run" WHERE "id" = %s',
            [run.pk],
        )
    assert Run.objects.count() == 1  # and the connection is usable


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_hot_read_is_prepared_once_it_has_run_a_few_times(run):
    """Django's cursors bind client-side: a query through them is planned every time."""
    from agentops.db.batch import query

    sql = 'SELECT "trace_id" FROM "agentops_run" WHERE "id" = %s'
    for _ in range(connection.connection.prepare_threshold + 1):
        assert query(sql, [run.pk]) == [(run.trace_id,)]

    assert 'SELECT "trace_id" FROM "agentops_run" WHERE "id" = $1' in _prepared_statements()


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_worker_adds_to_the_day_s_spend_while_another_holds_its_own_shard(monkeypatch):
    """What the shards are for: another worker's transaction holding its shard's row
    (until it commits) does not hold this one's spend_record; on the same shard it does."""
    import psycopg

    from agentops.runtime import budget

    today = budget._utc_day()
    for shard in (3, 7):
        DailySpend.objects.create(day=today, shard=shard, cost=Decimal("1"))
    with psycopg.connect(**connection.get_connection_params()) as other:  # a transaction
        other.execute(
            "UPDATE routing_dailyspend SET cost = cost + 1 WHERE day = %s AND shard = 3", [today]
        )
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '500ms'")
        try:
            monkeypatch.setattr(budget, "spend_shard", lambda: 7)
            budget.spend_record(cost=Decimal("0.5"))
            monkeypatch.setattr(budget, "spend_shard", lambda: 3)
            with pytest.raises(OperationalError, match="lock timeout"):
                budget.spend_record(cost=Decimal("0.5"))
        finally:
            with connection.cursor() as cursor:
                cursor.execute("RESET lock_timeout")
        other.rollback()
    spent = dict(DailySpend.objects.filter(day=today).values_list("shard", "cost"))
    assert spent == {3: Decimal("1"), 7: Decimal("1.5")}


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_tasks_first_query_replaces_a_connection_the_server_dropped(run):
    """As Django's cursor() does (CONN_HEALTH_CHECKS): the claim, a task's first query,
    goes out on a new connection after a database restart instead of failing."""
    import psycopg

    from agentops.db.batch import query

    assert connection.health_check_enabled
    [(pid,)] = query("SELECT pg_backend_pid()", [])
    settings = connection.get_connection_params()
    with psycopg.connect(**settings, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    connection.health_check_done = False  # what a new task starts with

    assert query('SELECT "trace_id" FROM "agentops_run" WHERE "id" = %s', [run.pk]) == [
        (run.trace_id,)
    ]
    assert query("SELECT pg_backend_pid()", [])[0][0] != pid
