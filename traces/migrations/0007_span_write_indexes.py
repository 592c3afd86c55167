"""Fewer index entries per span (issue 8): every run writes about 13 spans.

- The run foreign key's own index goes: span_run_started starts with run_id.
- span_started goes: prune_traces selects spans by their run, and the dashboard's
  ranges are served by span_kind_started and span_errors_started.
- span_name_run becomes partial over the kinds the trace search's "used tool X" reads.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("agentops", "0005_partial_fk_indexes"),
        ("traces", "0006_drop_span_id_like_index"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="span",
            name="span_name_run",
        ),
        migrations.RemoveIndex(
            model_name="span",
            name="span_started",
        ),
        migrations.AlterField(
            model_name="span",
            name="run",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="spans",
                to="agentops.run",
            ),
        ),
        migrations.AddIndex(
            model_name="span",
            index=models.Index(
                condition=models.Q(("kind__in", ["validate", "policy", "approval", "tool"])),
                fields=["name", "run"],
                name="span_name_run",
            ),
        ),
    ]
