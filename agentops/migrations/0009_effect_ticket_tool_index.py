"""A ticket's effects are found by (ticket, tool); that index replaces the ticket one.

Grounding reads a ticket's refunds before every reply. With the ticket_id index
alone, stale statistics let PostgreSQL AND it with effect_tool_created and read
the entry of every refund (issue 8). The new index is built before the old one
is dropped, so lookups by ticket are never without one.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("agentops", "0008_run_column_order"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="effect",
            index=models.Index(fields=["ticket", "tool"], name="effect_ticket_tool"),
        ),
        migrations.AlterField(
            model_name="effect",
            name="ticket",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="effects",
                to="agentops.ticket",
            ),
        ),
    ]
