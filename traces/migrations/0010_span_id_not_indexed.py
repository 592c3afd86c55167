"""Span ids lose their unique index: unique within a trace by construction, looked up
with their run (span_run_started), and the index cost every span a random-key insert
and its WAL (issue 8)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("traces", "0009_span_kind_started_ended"),
    ]

    operations = [
        migrations.AlterField(
            model_name="span",
            name="span_id",
            field=models.CharField(max_length=16),
        ),
    ]
