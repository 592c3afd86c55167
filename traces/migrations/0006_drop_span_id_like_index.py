"""Span ids are looked up whole, never by prefix: their `_like` index only costs writes."""

from django.db import migrations

from agentops.db.pattern_indexes import drop_pattern_index


class Migration(migrations.Migration):
    dependencies = [("traces", "0005_alerts")]

    operations = [drop_pattern_index("traces_span", "span_id")]
