"""Triggers that replace the config token on every write of the admin-edited tables.

The agent loop keeps these tables per process and checks, at the start of each
task, that the token is still the one it read them at (agentops.runtime.config_cache).
So every INSERT, UPDATE, DELETE and TRUNCATE of them, whoever issues it (the admin,
.update(), bulk, fixtures, migrations, raw SQL), replaces the token in the same
transaction: the change and the new token commit together, or roll back together.

The token is random, not a counter: a change rolled back (a test's transaction, a
failed save) takes its token with it, and a later, different change must not get
the same token again, or a process that read the tables inside the rolled-back
transaction would take them for current.

PostgreSQL fires one trigger per statement; SQLite has only row triggers (and a
table with DELETE triggers loses SQLite's truncate optimisation, so DELETE without
WHERE fires them too). SQLite drops a table's triggers when a migration rebuilds the
table, so they are installed again after every `migrate` (AgentopsConfig.ready).
"""

from __future__ import annotations

import secrets

from django.db import migrations

TABLE = "agentops_configtoken"  # the token's (ConfigToken)

# The tables the loop keeps per process. Literal names: migrations use them too.
TRACKED_TABLES = (
    "agentops_promptversion",
    "approvals_autonomysetting",
    "approvals_policychange",
    "approvals_riskpolicy",
    "evals_shadowsetting",
    "routing_modelprice",
    "routing_route",
)

_PG_FUNCTION = "agentops_config_token_replace"
_PG_TRIGGER = "agentops_config_token"
_SQLITE_EVENTS = ("insert", "update", "delete")


def _upsert(value: str) -> str:
    """The statement that sets the token to `value` (SQL), the row created if missing."""
    return (
        f"INSERT INTO {TABLE} (id, token) VALUES (1, {value}) "  # noqa: S608
        "ON CONFLICT (id) DO UPDATE SET token = excluded.token"
    )


def _sqlite_trigger(table: str, event: str) -> str:
    return f"agentops_config_token_{table}_{event}"


def _install_postgresql(cursor, tables: list[str]) -> None:
    cursor.execute(
        f"CREATE OR REPLACE FUNCTION {_PG_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN {_upsert('gen_random_uuid()::text')}; RETURN NULL; END $$"
    )
    for table in tables:
        cursor.execute(
            f"CREATE OR REPLACE TRIGGER {_PG_TRIGGER} "
            f"AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {_PG_FUNCTION}()"
        )


def _install_sqlite(cursor, tables: list[str]) -> None:
    for table in tables:
        for event in _SQLITE_EVENTS:
            name = _sqlite_trigger(table, event)
            cursor.execute(f"DROP TRIGGER IF EXISTS {name}")
            cursor.execute(
                f"CREATE TRIGGER {name} AFTER {event.upper()} ON {table} BEGIN "
                f"{_upsert('lower(hex(randomblob(16)))')}; END"
            )


def config_triggers_install(connection) -> bool:
    """(Re)install the triggers on the tracked tables that exist, and replace the token.

    Idempotent. False (nothing done) while the token table does not exist.
    """
    existing = set(connection.introspection.table_names())
    if TABLE not in existing:
        return False
    tables = [t for t in TRACKED_TABLES if t in existing]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            _install_postgresql(cursor, tables)
        elif connection.vendor == "sqlite":
            _install_sqlite(cursor, tables)
        else:  # no triggers, no token: the loop reads the tables at every task
            return False
        config_token_replace(cursor)
    return True


def config_triggers_drop(connection) -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            existing = set(connection.introspection.table_names())
            for table in TRACKED_TABLES:
                if table in existing:
                    cursor.execute(f"DROP TRIGGER IF EXISTS {_PG_TRIGGER} ON {table}")
            cursor.execute(f"DROP FUNCTION IF EXISTS {_PG_FUNCTION}()")
        elif connection.vendor == "sqlite":
            for table in TRACKED_TABLES:
                for event in _SQLITE_EVENTS:
                    cursor.execute(f"DROP TRIGGER IF EXISTS {_sqlite_trigger(table, event)}")


def config_token_replace(cursor) -> None:
    """A new random token: whatever a process kept is read again at its next task."""
    cursor.execute(_upsert("%s"), [secrets.token_hex(16)])


def config_triggers_installed(connection) -> set[str]:
    """The tracked tables that have their triggers (for tests and checks)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                "WHERE t.tgname = %s AND c.relname = ANY(%s)",
                [_PG_TRIGGER, list(TRACKED_TABLES)],
            )
            return {name for (name,) in cursor.fetchall()}
        if connection.vendor == "sqlite":
            cursor.execute("SELECT tbl_name, name FROM sqlite_master WHERE type = 'trigger'")
            names = set(cursor.fetchall())
            return {
                t
                for t in TRACKED_TABLES
                if all((t, _sqlite_trigger(t, e)) in names for e in _SQLITE_EVENTS)
            }
    return set()


def config_token_triggers() -> migrations.RunPython:
    """A migration operation: install the triggers (drop them on reverse)."""

    def forward(apps, schema_editor):
        config_triggers_install(schema_editor.connection)

    def backward(apps, schema_editor):
        config_triggers_drop(schema_editor.connection)

    return migrations.RunPython(forward, backward)
