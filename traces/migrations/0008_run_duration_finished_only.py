"""run_duration holds finished runs only (PostgreSQL; the index is PostgreSQL's).

Its key, finished_at - started_at, is null until a run ends, yet every non-HOT
update of an unfinished run (the claim, for one) wrote a null entry in it (issue 8).
Both queries it serves need a duration: run_list_page(sort="duration") filters
finished_at and started_at not null, and min_duration compares the difference.
"""

from django.db import migrations

COLUMNS = "(finished_at - started_at) DESC, id DESC"
FINISHED = "finished_at IS NOT NULL AND started_at IS NOT NULL"


def _recreate(schema_editor, where: str) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("DROP INDEX IF EXISTS run_duration")
    schema_editor.execute(f"CREATE INDEX run_duration ON agentops_run ({COLUMNS}){where}")


def finished_only(apps, schema_editor):
    _recreate(schema_editor, f" WHERE {FINISHED}")


def every_run(apps, schema_editor):
    _recreate(schema_editor, "")


class Migration(migrations.Migration):
    dependencies = [("traces", "0007_span_write_indexes")]

    operations = [migrations.RunPython(finished_only, every_run)]
