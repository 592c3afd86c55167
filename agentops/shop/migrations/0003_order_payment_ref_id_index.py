"""The charge lookup's index carries the id, so it serves the lock's ORDER BY id too.

On payment_ref alone, stale statistics made PostgreSQL walk the primary key
through every order to find the charge to lock (issue 8). Built before the old
one is dropped.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("shop", "0002_order_payment_ref_index"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="order",
            index=models.Index(fields=["payment_ref", "id"], name="shop_order_payment_ref_id"),
        ),
        migrations.RemoveIndex(
            model_name="order",
            name="shop_order_payment_ref_idx",
        ),
    ]
