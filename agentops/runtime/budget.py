"""Budget caps, checked before every model call.

Per run: tokens (input + output so far) and money; per day (UTC): money across
all runs. A cap of 0 is off. The check is `spent >= cap`: a run may spend up to
its cap, and the call that would start at or past it is never made; the run is
escalated with the reason instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Sum
from django.utils import timezone


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


def day_spend(*, day=None) -> Decimal:
    """What every model and triage span started on this UTC day cost."""
    from traces.models import Span

    day = day or timezone.now().date()
    start = datetime.combine(day, time.min, tzinfo=UTC)
    total = Span.objects.filter(
        started_at__gte=start,
        started_at__lt=start + timedelta(days=1),
        kind__in=[Span.Kind.MODEL, Span.Kind.TRIAGE],
    ).aggregate(total=Sum("cost"))["total"]
    return total or Decimal(0)


def budget_check(*, run) -> BudgetExceeded | None:
    """None if the next model call of this run may be made, else which cap it hits."""
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
        spent = day_spend()
        if spent >= daily_cap:
            return BudgetExceeded(
                "daily_cost",
                spent,
                daily_cap,
                f"Budget cap reached: {_usd(spent)} spent today of the daily {_usd(daily_cap)}.",
            )
    return None
