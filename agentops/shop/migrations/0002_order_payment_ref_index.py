"""The provider's charge lookup gets an index; the refund reference loses its `_like` one.

Order.payment_ref is looked up by the simulated provider at every refund (the
charge it locks). Refund.reference is written at every refund and looked up
whole, never by prefix: the varchar_pattern_ops index PostgreSQL gets beside
its unique index only costs writes.
"""

from django.db import migrations, models

from agentops.db.pattern_indexes import drop_pattern_index


class Migration(migrations.Migration):
    dependencies = [("shop", "0001_initial")]

    operations = [
        migrations.AddIndex(
            model_name="order",
            index=models.Index(fields=["payment_ref"], name="shop_order_payment_ref_idx"),
        ),
        drop_pattern_index("shop_refund", "reference"),
    ]
