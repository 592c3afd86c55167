"""A day's spend in one row per shard (a worker process adds to its own), issue 8.

One row a day, locked by every priced call's transaction until it committed, was the
one row the workers waited for each other on (3.9% of active backend samples in a
`make bench` round). Existing rows are shard 0. Backwards, each day's shards are
added up into shard 0 first.

Deploy with the workers stopped: a worker on the code before upserts ON CONFLICT (day),
which no unique index matches any more, and its priced steps would fail.
"""

from django.db import migrations, models
from django.db.models import Sum


def shards_merged(apps, schema_editor):
    DailySpend = apps.get_model("routing", "DailySpend")
    days = DailySpend.objects.values("day").annotate(total=Sum("cost")).order_by()
    for day in days:
        DailySpend.objects.filter(day=day["day"]).exclude(shard=0).delete()
        DailySpend.objects.update_or_create(
            day=day["day"], shard=0, defaults={"cost": day["total"]}
        )


class Migration(migrations.Migration):
    dependencies = [
        ("routing", "0003_daily_spend"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="dailyspend",
            options={"ordering": ["-day", "shard"], "verbose_name_plural": "daily spend"},
        ),
        migrations.AddField(
            model_name="dailyspend",
            name="shard",
            field=models.PositiveSmallIntegerField(default=0),
        ),
        migrations.AlterField(
            model_name="dailyspend",
            name="day",
            field=models.DateField(),
        ),
        migrations.AddConstraint(
            model_name="dailyspend",
            constraint=models.UniqueConstraint(
                fields=("day", "shard"), name="dailyspend_day_shard"
            ),
        ),
        # Last, so that backwards it runs first, before day is unique again.
        migrations.RunPython(migrations.RunPython.noop, shards_merged),
    ]
