"""The runs list sorts and filters by cost on finished runs' final_cost (issue 8).

run_cost indexed `cost`, which each model step's save of a priced model changes: that
save's only change to an indexed column, it made every such save a non-HOT update (a
new entry in each of the run's 10 indexes, ~2.1 KB of WAL a ticket). final_cost is
null until the run finishes, so a step's save leaves it as it was. Like the duration
sort, the cost sort and the cost filter are over finished runs.
"""

from django.db import migrations

CREATE_FINAL = (
    "CREATE INDEX IF NOT EXISTS run_final_cost ON agentops_run "
    "(final_cost DESC, id DESC) WHERE final_cost IS NOT NULL"
)
CREATE_COST = "CREATE INDEX IF NOT EXISTS run_cost ON agentops_run (cost DESC, id DESC)"


def final_cost(apps, schema_editor):
    schema_editor.execute("DROP INDEX IF EXISTS run_cost")
    schema_editor.execute(CREATE_FINAL)


def cost(apps, schema_editor):
    schema_editor.execute("DROP INDEX IF EXISTS run_final_cost")
    schema_editor.execute(CREATE_COST)


class Migration(migrations.Migration):
    dependencies = [
        ("agentops", "0014_run_final_cost"),
        ("traces", "0014_root_span_written_at_the_end"),
    ]

    operations = [migrations.RunPython(final_cost, cost)]
