"""The run columns that change while a run works go last, the conversation at the very end.

See agentops.db.column_order: a HOT update then logs from its first changed column on,
not the conversation and triage sitting between status and the timestamps.
PostgreSQL only; rewrites the run table once.
"""

from django.db import migrations

from agentops.db.column_order import move_columns_to_end

# In the order they change least to most often within an update; messages last.
MOVED = [
    "tool_results",
    "step_count",
    "model_calls",
    "input_tokens",
    "output_tokens",
    "cost",
    "lease_owner",
    "lease_expires_at",
    "started_at",
    "finished_at",
    "updated_at",
    "outcome_reason",
    "reply",
    "messages",
]


class Migration(migrations.Migration):
    dependencies = [("agentops", "0007_time_ordered_codes")]

    operations = [move_columns_to_end("agentops_run", MOVED)]
