"""Moving columns to the physical end of a table (PostgreSQL), for smaller update records.

When an update leaves a row on its page (a HOT update, see migration 0006), PostgreSQL
logs only the bytes between the first and the last changed byte of the row. The run
table's first columns were status, model, trace_id, then the conversation (messages),
tool_results and triage, and its timestamps came last: every update, even one of
a few integers and updated_at, logged the whole conversation and the triage between
them (issue 8). With the columns that change during a run moved to the end, and the
conversation last, an update logs from its first changed counter onwards.

The order of columns means nothing to Django or to any query here (every statement
names its columns), so the reverse operation leaves the order as it is.
"""

from __future__ import annotations

from django.db import migrations


def _move_to_end(schema_editor, table: str, columns: list[str]) -> None:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT attname, format_type(atttypid, atttypmod), attnotnull, atthasdef "
            "FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
            "AND NOT attisdropped",
            [table],
        )
        info = {name: (kind, notnull, hasdef) for name, kind, notnull, hasdef in cursor.fetchall()}
        cursor.execute(
            "SELECT conname, contype, pg_get_constraintdef(oid), "
            "ARRAY(SELECT attname FROM pg_attribute "
            "      WHERE attrelid = conrelid AND attnum = ANY(conkey)) "
            "FROM pg_constraint WHERE conrelid = %s::regclass",
            [table],
        )
        checks = {}
        for name, kind, definition, keys in cursor.fetchall():
            if set(keys) & set(columns):
                # A key, unique or foreign key constraint would come back as something else.
                if kind != "c":
                    raise ValueError(f"{table}.{keys}: only check constraints can be moved")
                checks[name] = definition
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s", [table])
        indexes = dict(cursor.fetchall())
        # Stored generated columns (Run.final_cost) may depend on the moved ones, which
        # then cannot be dropped: they go first and come back last, computed again.
        cursor.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), "
            "pg_get_expr(d.adbin, d.adrelid) "
            "FROM pg_attribute a "
            "JOIN pg_attrdef d ON (d.adrelid, d.adnum) = (a.attrelid, a.attnum) "
            "WHERE a.attrelid = %s::regclass AND a.attgenerated = 's' AND NOT a.attisdropped "
            "ORDER BY a.attnum",
            [table],
        )
        generated = cursor.fetchall()
    for column, _kind, _expression in generated:
        schema_editor.execute(f'ALTER TABLE "{table}" DROP COLUMN "{column}"')
    for column in columns:
        kind, _notnull, hasdef = info[column]
        if hasdef:
            raise ValueError(f"{table}.{column}: a database default would be lost")
        schema_editor.execute(f'ALTER TABLE "{table}" ADD COLUMN "{column}__moved" {kind}')
    assignments = ", ".join(f'"{column}__moved" = "{column}"' for column in columns)
    # Names from the migration, not from users.
    schema_editor.execute(f'UPDATE "{table}" SET {assignments}')  # noqa: S608
    for column in columns:
        # Drops the indexes and check constraints on the column, recreated below.
        schema_editor.execute(f'ALTER TABLE "{table}" DROP COLUMN "{column}"')
        schema_editor.execute(
            f'ALTER TABLE "{table}" RENAME COLUMN "{column}__moved" TO "{column}"'
        )
        if info[column][1]:
            schema_editor.execute(f'ALTER TABLE "{table}" ALTER COLUMN "{column}" SET NOT NULL')
    for column, kind, expression in generated:
        schema_editor.execute(
            f'ALTER TABLE "{table}" ADD COLUMN "{column}" {kind} '
            f"GENERATED ALWAYS AS ({expression}) STORED"
        )
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s", [table])
        kept = {name for (name,) in cursor.fetchall()}
    for name, definition in indexes.items():
        if name not in kept:
            schema_editor.execute(definition)
    for name, definition in checks.items():
        schema_editor.execute(f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {definition}')
    schema_editor.execute(f'ANALYZE "{table}"')


def move_columns_to_end(table: str, columns: list[str]) -> migrations.RunPython:
    """A migration operation: move `columns`, in this order, to the end of `table`.

    PostgreSQL only (elsewhere nothing happens). Rewrites every row of the table once.
    """

    def forward(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            _move_to_end(schema_editor, table, columns)

    return migrations.RunPython(forward, migrations.RunPython.noop)
