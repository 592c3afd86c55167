"""Run.final_cost: the cost of a finished run, a stored generated column (issue 8).

Adding a stored generated column rewrites the table (PostgreSQL), under a lock that
holds off the workers' writes meanwhile: ~1 s per 100,000 runs here.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("agentops", "0013_run_status_last"),
    ]

    operations = [
        migrations.AddField(
            model_name="run",
            name="final_cost",
            field=models.GeneratedField(
                db_persist=True,
                expression=models.Case(
                    models.When(finished_at__isnull=False, then=models.F("cost"))
                ),
                output_field=models.DecimalField(decimal_places=6, max_digits=12),
            ),
        ),
    ]
