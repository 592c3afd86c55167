"""A run's status goes with the columns a run changes, after its timestamps.

See agentops.db.column_order: an update logs the bytes between the first and the last
column it changes. The status, still the third column, made the claim (status, lease,
started_at, updated_at) and the run's end log the whole row between: the trace id and
the triage, written once (~450 bytes a ticket each time). PostgreSQL only; rewrites
the run table once.
"""

from django.db import migrations

from agentops.db.column_order import move_columns_to_end

# The status, then the two columns that were after it, so they stay last.
MOVED = ["status", "outcome_reason", "reply"]


class Migration(migrations.Migration):
    dependencies = [("agentops", "0012_turns")]

    operations = [move_columns_to_end("agentops_run", MOVED)]
