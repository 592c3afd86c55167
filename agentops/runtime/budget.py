"""Budget caps, checked before every model call.

Per run: tokens (input + output so far) and money; per day (UTC): money across
all runs. A cap of 0 is off. The check is `spent >= cap`: a run may spend up to
its cap, and the call that would start at or past it is never made; the run is
escalated with the reason instead.

The day's spend a check compares is read moments before it: by the claim of the
run, or last in the transaction of the run's latest save (after that transaction's
own spend), when that was at most DAY_SPEND_FRESH_SECONDS ago (agentops.runtime.loop);
else by the check itself. What other runs record in between (one tool call of this
run, at most) is counted at the next check, as a call of theirs still in flight is.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date
from decimal import Decimal

from django.conf import settings
from django.db import connection
from django.db.models import DecimalField
from django.db.models.expressions import RawSQL
from django.utils import timezone

from agentops.db import hot

# Rows a day's spend is kept in (see spend_shard); a read adds them up.
DAY_SPEND_SHARDS = 16


@dataclass(frozen=True)
class BudgetExceeded:
    cap: str  # run_tokens / run_cost / daily_cost
    spent: Decimal | int
    limit: Decimal | int
    reason: str

    def as_dict(self) -> dict:
        return {"cap": self.cap, "spent": str(self.spent), "limit": str(self.limit)}


def _usd(value: Decimal) -> str:
    return f"${value.quantize(Decimal('0.0001'))}"


def _utc_day(day=None) -> date:
    return day or timezone.now().astimezone(UTC).date()


def spend_shard() -> int:
    """The row of the day's spend this process adds to: its own, but when two worker
    processes' ids agree modulo DAY_SPEND_SHARDS (see routing.models.DailySpend)."""
    return os.getpid() % DAY_SPEND_SHARDS


def day_spend(*, day=None) -> Decimal:
    """What model and triage calls cost on this UTC day (today by default)."""
    from agentops.routing.models import DailySpend

    # Read before every model call: the hot path's plain SQL (see agentops.db.hot).
    cost = hot.sum_where(DailySpend, "cost", {"day": _utc_day(day)})
    return cost if cost is not None else Decimal(0)


def day_spend_column() -> RawSQL:
    """Today's spend as a column of another query (the claim of a run): NULL for none."""
    from agentops.routing.models import DailySpend

    table = DailySpend._meta.db_table
    day = DailySpend._meta.get_field("day").get_db_prep_save(_utc_day(), connection)
    return RawSQL(  # noqa: S611 - the day goes as a parameter
        f"SELECT sum(cost) FROM {table} WHERE day = %s",  # noqa: S608 - a model's table
        [day],
        output_field=DecimalField(max_digits=14, decimal_places=6),
    )


def day_spend_read(*, on_read: Callable[[Decimal], None]) -> None:
    """Read today's spend with the open write transaction, after its writes (its own
    spend_record among them), and give it to `on_read` once the transaction is sent."""
    from agentops.routing.models import DailySpend

    hot.sum_with(
        DailySpend,
        "cost",
        {"day": _utc_day()},
        on_read=lambda cost: on_read(cost if cost is not None else Decimal(0)),
    )


def spend_record(*, cost: Decimal, day=None) -> None:
    """Add a priced call to its day's counter, in this process's shard of it. Call
    inside the transaction that saves the call.

    Free calls (the offline model at its seeded price) write nothing. One statement:
    the shard's first call of a day creates its row, a concurrent one adds to it.
    """
    from agentops.routing.models import DailySpend

    if not cost:
        return
    table = DailySpend._meta.db_table
    day = DailySpend._meta.get_field("day").get_db_prep_save(_utc_day(day), connection)
    cost = DailySpend._meta.get_field("cost").get_db_prep_save(Decimal(cost), connection)
    shard = spend_shard()
    add = f"ON CONFLICT (day, shard) DO UPDATE SET cost = {table}.cost + excluded.cost"
    if connection.vendor != "postgresql":
        hot.execute_sql(
            f"INSERT INTO {table} (day, shard, cost) VALUES (%s, %s, %s) {add}",  # noqa: S608 - a model's table
            [day, shard, cost],
        )
        return
    # The row exists but for the shard's first call of the day: UPDATE it, and INSERT ...
    # ON CONFLICT only when there was none. The upsert alone locks the row it finds
    # before updating it, a WAL record of its own (5 a ticket, ~270 B); an UPDATE, none.
    hot.execute_sql(
        f"WITH added AS (UPDATE {table} SET cost = cost + %s "  # noqa: S608 - a model's table
        f"WHERE day = %s AND shard = %s RETURNING 1) "
        f"INSERT INTO {table} (day, shard, cost) SELECT %s, %s, %s "
        f"WHERE NOT EXISTS (SELECT FROM added) {add}",
        [cost, day, shard, day, shard, cost],
    )


def budget_check(*, run, day_spent: Decimal | None = None) -> BudgetExceeded | None:
    """None if the next model call of this run may be made, else which cap it hits.

    `day_spent`: today's spend, read moments ago (by the run's last write, see
    agentops.runtime.loop); None reads it now.
    """
    tokens = run.input_tokens + run.output_tokens
    token_cap = settings.RUN_MAX_TOKENS
    if token_cap and tokens >= token_cap:
        return BudgetExceeded(
            "run_tokens",
            tokens,
            token_cap,
            f"Budget cap reached: this run used {tokens} tokens of its {token_cap}.",
        )
    cost = Decimal(run.cost)
    cost_cap = settings.RUN_MAX_COST_USD
    if cost_cap and cost >= cost_cap:
        return BudgetExceeded(
            "run_cost",
            cost,
            cost_cap,
            f"Budget cap reached: this run spent {_usd(cost)} of its {_usd(cost_cap)}.",
        )
    daily_cap = settings.DAILY_MAX_COST_USD
    if daily_cap:
        spent = day_spent if day_spent is not None else day_spend()
        if spent >= daily_cap:
            return BudgetExceeded(
                "daily_cost",
                spent,
                daily_cap,
                f"Budget cap reached: {_usd(spent)} spent today of the daily {_usd(daily_cap)}.",
            )
    return None
