"""The conversation moves from a column of the run to one row per turn (issue 8).

Each update of a run rewrote the whole conversation it carried; a turn is written once.
The copy is one statement on PostgreSQL; elsewhere (SQLite: development) run by run.
"""

import django.db.models.deletion
from django.db import migrations, models

COPY_TURNS = """
INSERT INTO agentops_turn (run_id, seq, message)
SELECT run.id, turn.ordinality - 1, turn.value
FROM agentops_run AS run
CROSS JOIN LATERAL jsonb_array_elements(run.messages) WITH ORDINALITY AS turn
"""

COPY_BACK = """
UPDATE agentops_run AS run SET messages = turns.messages
FROM (
    SELECT run_id, jsonb_agg(message ORDER BY seq) AS messages
    FROM agentops_turn GROUP BY run_id
) AS turns
WHERE turns.run_id = run.id
"""


def turns_from_messages(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        # The turns' foreign keys are checked now, not at commit: a table with pending
        # trigger events cannot be altered, and the run table is, next.
        schema_editor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        schema_editor.execute(COPY_TURNS)
        return
    Run, Turn = apps.get_model("agentops", "Run"), apps.get_model("agentops", "Turn")
    for run_id, messages in Run.objects.values_list("id", "messages").iterator():
        Turn.objects.bulk_create(
            Turn(run_id=run_id, seq=seq, message=message) for seq, message in enumerate(messages)
        )


def messages_from_turns(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(COPY_BACK)
        return
    Run, Turn = apps.get_model("agentops", "Run"), apps.get_model("agentops", "Turn")
    conversations: dict[int, list] = {}
    for run_id, message in Turn.objects.order_by("run_id", "seq").values_list("run_id", "message"):
        conversations.setdefault(run_id, []).append(message)
    for run_id, messages in conversations.items():
        Run.objects.filter(pk=run_id).update(messages=messages)


class Migration(migrations.Migration):
    dependencies = [("agentops", "0011_expect_function")]

    operations = [
        migrations.CreateModel(
            name="Turn",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "run_id",
                        "seq",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("seq", models.PositiveIntegerField()),
                ("message", models.JSONField()),
                (
                    "run",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="turns",
                        to="agentops.run",
                    ),
                ),
            ],
            options={"ordering": ["run", "seq"]},
        ),
        migrations.RunPython(turns_from_messages, messages_from_turns),
        migrations.RemoveField(model_name="run", name="messages"),
    ]
