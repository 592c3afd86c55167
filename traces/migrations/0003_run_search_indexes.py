"""Indexes on the core app's runs and tickets for the trace search (traces/selectors.py).

They live here, with the queries they serve, rather than in agentops' models, so
the core app's migrations stay the core app's. Each names its query.
"""

from django.db import migrations

# (name, table, columns) for every database.
INDEXES = [
    # run_list_page(model=X): WHERE model = X ORDER BY created_at DESC, id DESC LIMIT 51
    ("run_model_created", "agentops_run", "model, created_at DESC, id DESC"),
    # run_list_page(sort="cost") and min_cost: ORDER BY cost DESC, id DESC / WHERE cost >= X
    ("run_cost", "agentops_run", "cost DESC, id DESC"),
    # run_list_page(q=<trace id>): WHERE trace_id = X
    ("run_trace_id", "agentops_run", "trace_id"),
    # run_list_page(sort="newest"): ORDER BY created_at DESC, id DESC LIMIT 51 with the id tie-break
    ("run_created_id", "agentops_run", "created_at DESC, id DESC"),
]

# Expressions, PostgreSQL only (SQLite stores times as text).
POSTGRES_INDEXES = [
    # run_list_page(sort="duration") and min_duration:
    # ORDER BY (finished_at - started_at) DESC, id DESC / WHERE (finished_at - started_at) >= X
    ("run_duration", "agentops_run", "(finished_at - started_at) DESC, id DESC"),
    # run_list_page(q=<email>): WHERE UPPER(customer_email::text) = UPPER(X)  (Django's iexact)
    ("ticket_email_upper", "agentops_ticket", "UPPER(customer_email::text)"),
]


def create(apps, schema_editor):
    indexes = INDEXES + (POSTGRES_INDEXES if schema_editor.connection.vendor == "postgresql" else [])
    for name, table, columns in indexes:
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({columns})")


def drop(apps, schema_editor):
    for name, _table, _columns in INDEXES + POSTGRES_INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [
        ("agentops", "0001_initial"),
        ("traces", "0002_search_indexes"),
    ]

    operations = [migrations.RunPython(create, drop)]
