"""The indexes the hot path writes into are only those its readers need (issue 8)."""

import importlib
from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Count
from django.utils import timezone

from agentops.db.column_order import move_columns_to_end
from traces.models import STEP_LATENCY_KINDS, Span

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="index definitions and fillfactor are PostgreSQL's",
    ),
]


def _indexes(table: str) -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s", [table])
        return dict(cursor.fetchall())


def _on_column(table: str, column: str) -> list[str]:
    return [d for d in _indexes(table).values() if f"({column})" in d or f"({column}," in d]


def test_spans_have_no_index_of_their_own_on_run_but_one_that_starts_with_it():
    indexes = _indexes("traces_span")
    assert [d for d in indexes.values() if "btree (run_id)" in d] == []
    assert "btree (run_id, started_at)" in indexes["span_run_started"]
    assert "span_started" not in indexes


def test_a_tickets_effects_are_found_by_ticket_and_tool_by_one_index():
    indexes = _indexes("agentops_effect")
    assert indexes["effect_ticket_tool"].endswith("(ticket_id, tool)")
    assert [d for d in indexes.values() if "(ticket_id" in d] == [indexes["effect_ticket_tool"]]


def test_the_tool_search_index_holds_one_span_a_tool_call():
    definition = _indexes("traces_span")["span_name_run"]
    assert definition.endswith("btree (name, run_id) WHERE ((kind)::text = 'validate'::text)")


def test_the_tool_search_reads_the_tool_search_index():
    from traces.selectors import RunFilters, run_search

    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
    plan = run_search(filters=RunFilters(tool="issue_refund")).explain()
    assert "span_name_run" in plan, plan


def test_the_step_latency_index_holds_ended_spans_of_the_timed_kinds_only():
    definition = _indexes("traces_span")["span_kind_started"]
    assert "btree (kind, started_at, ended_at) WHERE ((ended_at IS NOT NULL)" in definition
    for kind in STEP_LATENCY_KINDS:
        assert f"'{kind}'" in definition
    for kind in ("policy", "run", "approval", "reply"):
        assert f"'{kind}'" not in definition


def test_the_dashboard_times_steps_from_the_step_latency_index():
    now = timezone.now()
    spans = Span.objects.filter(started_at__gte=now - timedelta(days=1), started_at__lt=now)
    ended = spans.filter(kind__in=STEP_LATENCY_KINDS, ended_at__isnull=False)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_bitmapscan = off")
    plan = ended.values("kind").annotate(n=Count("*")).explain()
    assert "Index Only Scan using span_kind_started" in plan, plan


@pytest.mark.parametrize("column", ["replay_of_id", "requested_by_id", "prompt_version_id"])
def test_rarely_set_run_foreign_keys_are_indexed_only_where_set(column):
    definitions = _on_column("agentops_run", column)
    assert len(definitions) == 1, definitions
    assert definitions[0].endswith(f"WHERE ({column} IS NOT NULL)")


def test_runs_are_listed_newest_first_by_one_index():
    indexes = _indexes("agentops_run")
    assert "run_created" not in indexes
    assert "btree (created_at DESC, id DESC)" in indexes["run_created_id"]


def test_run_duration_holds_finished_runs_only():
    definition = _indexes("agentops_run")["run_duration"]
    assert "WHERE ((finished_at IS NOT NULL) AND (started_at IS NOT NULL))" in definition


def test_the_run_table_leaves_room_on_its_pages_for_updates():
    with connection.cursor() as cursor:
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = 'agentops_run'")
        assert cursor.fetchone()[0] == ["fillfactor=20"]


@pytest.mark.parametrize(
    ("app", "migration"),
    [("agentops", "0006_run_fillfactor"), ("traces", "0008_run_duration_finished_only")],
)
def test_the_postgresql_only_migrations_reverse(app, migration):
    executor = MigrationExecutor(connection)
    operation = executor.loader.get_migration(app, migration).operations[0]
    with connection.schema_editor() as editor:
        operation.reverse_code(None, editor)
    with connection.cursor() as cursor:
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = 'agentops_run'")
        reloptions = cursor.fetchone()[0]
    duration = _indexes("agentops_run")["run_duration"]
    with connection.schema_editor() as editor:
        operation.code(None, editor)
    if migration.endswith("fillfactor"):
        assert reloptions is None
    else:
        assert "WHERE" not in duration
    assert _indexes("agentops_run")["run_duration"].endswith("started_at IS NOT NULL))")


def _columns(table: str) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
            "AND NOT attisdropped ORDER BY attnum",
            [table],
        )
        return [name for (name,) in cursor.fetchall()]


def _checks(table: str) -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = %s::regclass",
            [table],
        )
        return dict(cursor.fetchall())


def test_the_columns_a_run_changes_come_last():
    columns = _columns("agentops_run")
    # The conversation, once the last column, is the run's turns (migration 0012).
    # final_cost, computed by the database, came after (0014): null until the run ends,
    # it takes no byte of a running run's row.
    assert columns[0] == "id" and columns[-2:] == ["reply", "final_cost"]
    assert "messages" not in columns
    # Triage, written once, sits before the columns every update changes.
    assert columns.index("triage") < columns.index("tool_results") < columns.index("updated_at")
    # The status too changes with the claim and the end: with them (migration 0013).
    assert columns.index("updated_at") < columns.index("status")


def test_moving_the_columns_again_keeps_rows_indexes_and_constraints():
    from agentops import ids
    from agentops.models import Run, Ticket

    ticket = Ticket.objects.create(customer_email="a@example.com", subject="s", body="b")
    run = Run.objects.create(
        ticket=ticket,
        trace_id=ids.trace_id(),
        triage={"intent": "refund"},
        step_count=3,
        cost="0.125000",
        reply="Done.",
    )
    indexes, checks = _indexes("agentops_run"), _checks("agentops_run")
    with connection.cursor() as cursor:
        # The deferred foreign key checks of the inserts above would block ALTER TABLE.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    # Migration 0008's columns, but the conversation, a column no more (see 0012), then 0013's.
    column_order = importlib.import_module("agentops.migrations.0008_run_column_order")
    status_last = importlib.import_module("agentops.migrations.0013_run_status_last")
    moved = [c for c in column_order.MOVED if c not in ("messages", *status_last.MOVED)]
    moved += status_last.MOVED
    with connection.schema_editor() as editor:
        move_columns_to_end("agentops_run", moved).code(None, editor)
    assert _indexes("agentops_run") == indexes
    assert _checks("agentops_run") == checks
    again = Run.objects.get(pk=run.pk)
    assert (again.step_count, str(again.cost), again.reply) == (3, "0.125000", "Done.")
    assert again.final_cost is None  # computed again: the run has not finished
    Run.objects.filter(pk=run.pk).update(finished_at=run.created_at)
    assert Run.objects.get(pk=run.pk).final_cost == again.cost
    assert again.triage == {"intent": "refund"} and again.updated_at == run.updated_at
