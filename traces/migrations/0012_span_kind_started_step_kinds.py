"""span_kind_started holds the kinds the dashboard times only: a ticket's policy and run
spans (3 of 14) no longer enter it (issue 8)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('agentops', '0013_run_status_last'),
        ('traces', '0011_span_trace_id_from_run'),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name='span',
            name='span_kind_started',
        ),
        migrations.AddIndex(
            model_name='span',
            index=models.Index(condition=models.Q(('ended_at__isnull', False), ('kind__in', ['model', 'tool', 'validate', 'triage'])), fields=['kind', 'started_at', 'ended_at'], name='span_kind_started'),
        ),
    ]
