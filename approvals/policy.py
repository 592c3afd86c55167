"""The risk policy, evaluated in code on validated arguments and real data.

Never by the model: no ticket text can talk its way past this.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from django.conf import settings

from agentops.money import money_format
from approvals.models import RiskPolicy

AUTO = "auto"
APPROVAL = "approval"
BLOCK = "block"


@dataclass(frozen=True)
class RuleResult:
    rule: str
    tripped: bool
    detail: str


@dataclass(frozen=True)
class PolicyDecision:
    outcome: str  # auto / approval / block
    rules: tuple[RuleResult, ...]

    def as_list(self) -> list[dict]:
        return [asdict(r) for r in self.rules]

    @property
    def tripped(self) -> list[RuleResult]:
        return [r for r in self.rules if r.tripped]


def policy_evaluate(*, tool: str, amount_cents: int | None, currency: str = "") -> PolicyDecision:
    """Decide whether a validated, side-effecting tool call may run on its own."""
    if tool != "issue_refund" or amount_cents is None:
        return PolicyDecision(AUTO, (RuleResult("no_policy", False, f"{tool} runs automatically"),))
    threshold = _approval_threshold(tool=tool, currency=currency)
    over = amount_cents > threshold
    detail = (
        f"{money_format(cents=amount_cents, currency=currency)} {'>' if over else '<='} "
        f"approval threshold {money_format(cents=threshold, currency=currency)}"
    )
    return PolicyDecision(
        APPROVAL if over else AUTO, (RuleResult("approval_threshold", over, detail),)
    )


def _approval_threshold(*, tool: str, currency: str) -> int:
    policy = RiskPolicy.objects.filter(tool=tool, currency=currency.upper()).first()
    if policy is not None:
        return policy.approval_threshold_cents
    return settings.DEFAULT_APPROVAL_THRESHOLD_CENTS
