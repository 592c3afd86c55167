"""Room on each page of the run table for the row to grow and be updated in place.

A run is inserted small (about 200 bytes) and rewritten at every step of the agent
loop as its conversation grows (about 2 KB at the end of a refund run). On a full
page each rewrite moves the row to another page: a non-HOT update, which writes an
entry in every index of the table and, after a checkpoint, a full-page image of
the page it lands on. With fillfactor 20 an insert leaves 80% of the page free, so
a run's updates stay on its page and are HOT (issue 8: about 5 KB of WAL less
per ticket). PostgreSQL only; other databases have no such setting.
"""

from django.db import migrations

FILLFACTOR = 20


def set_fillfactor(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE agentops_run SET (fillfactor = {FILLFACTOR})")


def reset_fillfactor(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE agentops_run RESET (fillfactor)")


class Migration(migrations.Migration):
    dependencies = [("agentops", "0005_partial_fk_indexes")]

    operations = [migrations.RunPython(set_fillfactor, reset_fillfactor)]
