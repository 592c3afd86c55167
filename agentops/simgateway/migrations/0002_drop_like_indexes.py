"""The provider's refund ids, payments and keys are looked up whole, never by prefix.

Each ProviderRefund row (one per refund) paid for three varchar_pattern_ops
indexes on PostgreSQL beside the btrees the lookups use; they only cost writes.
"""

from django.db import migrations

from agentops.db.pattern_indexes import drop_pattern_index


class Migration(migrations.Migration):
    dependencies = [("simgateway", "0001_initial")]

    operations = [
        drop_pattern_index("simgateway_providerrefund", "refund_id"),
        drop_pattern_index("simgateway_providerrefund", "payment_ref"),
        drop_pattern_index("simgateway_providerrefund", "idempotency_key"),
    ]
