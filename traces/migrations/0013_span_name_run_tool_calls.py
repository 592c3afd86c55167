"""span_name_run holds one span a tool call, its validation (issue 8): a ticket's policy
and tool spans, and the tool spans' updates, entered it too (10 entries a ticket, now 3)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("agentops", "0013_run_status_last"),
        ("traces", "0012_span_kind_started_step_kinds"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="span",
            name="span_name_run",
        ),
        migrations.AddIndex(
            model_name="span",
            index=models.Index(
                condition=models.Q(("kind", "validate")),
                fields=["name", "run"],
                name="span_name_run",
            ),
        ),
    ]
