"""A span's trace id is its run's (Span.trace_id reads it): no row stores it again.

33 bytes of each of a ticket's ~17 span rows and updates, and of their WAL (issue 8).
Going back fills the column from the runs again.
"""

from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def trace_ids_back(apps, schema_editor):
    Span = apps.get_model("traces", "Span")
    Run = apps.get_model("agentops", "Run")
    Span.objects.update(
        trace_id=Subquery(Run.objects.filter(pk=OuterRef("run_id")).values("trace_id")[:1])
    )


class Migration(migrations.Migration):
    dependencies = [
        ("traces", "0010_span_id_not_indexed"),
        ("agentops", "0013_run_status_last"),
    ]

    operations = [
        # Reversed, in this order from the bottom: the column comes back empty for every
        # row (a NOT NULL column without a default could not), is filled, and loses its
        # default again.
        migrations.AlterField(
            model_name="span",
            name="trace_id",
            field=models.CharField(max_length=32, blank=True, default=""),
        ),
        migrations.RunPython(migrations.RunPython.noop, trace_ids_back, elidable=True),
        migrations.RemoveField(model_name="span", name="trace_id"),
    ]
