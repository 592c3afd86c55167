"""The `_like` indexes beside hot-path keys are dropped on PostgreSQL, and come back on reverse."""

import pytest
from django.db import connection

from agentops.db.pattern_indexes import _like_indexes, drop_pattern_index

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="varchar_pattern_ops indexes are PostgreSQL's"
    ),
]

KEYS = [("agentops_effect", "idempotency_key"), ("traces_span", "span_id")]


def _indexes(table: str) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE tablename = %s", [table])
        return [row[0] for row in cursor.fetchall()]


def test_the_ledger_key_keeps_its_unique_index_and_loses_the_pattern_one():
    table, column = KEYS[0]
    indexes = [d for d in _indexes(table) if f"({column}" in d]
    assert any(d.startswith("CREATE UNIQUE INDEX") for d in indexes), indexes
    assert not any("varchar_pattern_ops" in d for d in indexes), indexes
    # Another table's pattern index is left alone: the ticket's external id is searched
    # by prefix when seeded traces are cleared.
    assert any("varchar_pattern_ops" in d for d in _indexes("agentops_ticket"))


def test_a_span_id_has_no_index_of_its_own():
    # Looked up with its run (span_run_started); unique within its trace by construction.
    assert [d for d in _indexes("traces_span") if "(span_id" in d] == []


@pytest.mark.parametrize(("table", "column"), KEYS)
def test_reversing_puts_the_pattern_index_back(table, column):
    operation = drop_pattern_index(table, column)
    with connection.schema_editor() as editor:
        operation.reverse_code(None, editor)
    with connection.cursor() as cursor:
        assert len(_like_indexes(cursor, table, column)) == 1
    with connection.schema_editor() as editor:
        operation.code(None, editor)
    with connection.cursor() as cursor:
        assert _like_indexes(cursor, table, column) == []
