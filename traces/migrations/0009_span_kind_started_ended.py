"""span_kind_started holds ended spans only: the step latency reads no others (issue 8)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('agentops', '0008_run_column_order'),
        ('traces', '0008_run_duration_finished_only'),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name='span',
            name='span_kind_started',
        ),
        migrations.AddIndex(
            model_name='span',
            index=models.Index(condition=models.Q(('ended_at__isnull', False)), fields=['kind', 'started_at', 'ended_at'], name='span_kind_started'),
        ),
    ]
