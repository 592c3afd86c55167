"""The ledger key is looked up whole, never by prefix: its `_like` index only costs writes."""

from django.db import migrations

from agentops.db.pattern_indexes import drop_pattern_index


class Migration(migrations.Migration):
    dependencies = [("agentops", "0003_replay_divergence")]

    operations = [drop_pattern_index("agentops_effect", "idempotency_key")]
