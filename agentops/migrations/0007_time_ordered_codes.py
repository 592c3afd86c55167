"""Ticket and run codes are version 7 UUIDs (agentops.ids.uuid7): ordered by time.

Their unique indexes, and the ledger keys made from a ticket's code, are then
appended to rather than written at random places (issue 8). Python-side default
only: the database schema does not change.
"""

import agentops.ids
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('agentops', '0006_run_fillfactor'),
    ]

    operations = [
        migrations.AlterField(
            model_name='run',
            name='code',
            field=models.UUIDField(default=agentops.ids.uuid7, editable=False, unique=True),
        ),
        migrations.AlterField(
            model_name='ticket',
            name='code',
            field=models.UUIDField(default=agentops.ids.uuid7, editable=False, unique=True),
        ),
    ]
