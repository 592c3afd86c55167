"""Fewer index entries per run update (issue 8).

A non-HOT update of a run writes an entry in every index of the run table. The
foreign keys that production runs leave null (replay_of, requested_by,
prompt_version) are indexed only where set, and run_created goes: run_created_id
(created_at DESC, id DESC) serves every query it served.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("agentops", "0004_drop_idempotency_key_like_index"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="run",
            name="run_created",
        ),
        migrations.AlterField(
            model_name="run",
            name="prompt_version",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="runs",
                to="agentops.promptversion",
            ),
        ),
        migrations.AlterField(
            model_name="run",
            name="replay_of",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="replays",
                to="agentops.run",
            ),
        ),
        migrations.AlterField(
            model_name="run",
            name="requested_by",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddIndex(
            model_name="run",
            index=models.Index(
                condition=models.Q(("replay_of__isnull", False)),
                fields=["replay_of"],
                name="run_replay_of",
            ),
        ),
        migrations.AddIndex(
            model_name="run",
            index=models.Index(
                condition=models.Q(("requested_by__isnull", False)),
                fields=["requested_by"],
                name="run_requested_by",
            ),
        ),
        migrations.AddIndex(
            model_name="run",
            index=models.Index(
                condition=models.Q(("prompt_version__isnull", False)),
                fields=["prompt_version"],
                name="run_prompt_version",
            ),
        ),
    ]
