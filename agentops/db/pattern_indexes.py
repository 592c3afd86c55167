"""Dropping the `_like` index PostgreSQL backends add beside a unique CharField.

Django gives every indexed varchar column a second btree with varchar_pattern_ops,
so `LIKE 'prefix%'` can use an index. Keys the hot path writes on every ticket
(span ids, ledger keys) are only ever looked up whole, so that second index is
pure write cost: about 2 KB of WAL per ticket each (issue 8). These migration
operations drop it, and put it back on reverse, on PostgreSQL only.
"""

from __future__ import annotations

from django.db import migrations


def _like_indexes(cursor, table: str, column: str) -> list[str]:
    cursor.execute(
        "SELECT indexname FROM pg_indexes WHERE tablename = %s AND indexdef LIKE %s",
        [table, f"%({column} varchar_pattern_ops)%"],
    )
    return [name for (name,) in cursor.fetchall()]


def drop_pattern_index(table: str, column: str) -> migrations.RunPython:
    """A migration operation: drop the `_like` index on table.column (PostgreSQL only)."""

    def forward(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        with schema_editor.connection.cursor() as cursor:
            for name in _like_indexes(cursor, table, column):
                cursor.execute(f'DROP INDEX IF EXISTS "{name}"')

    def backward(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        with schema_editor.connection.cursor() as cursor:
            if not _like_indexes(cursor, table, column):
                cursor.execute(
                    f'CREATE INDEX "{table}_{column}_like" ON "{table}" '
                    f'("{column}" varchar_pattern_ops)'
                )

    return migrations.RunPython(forward, backward)
