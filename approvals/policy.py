"""The risk policy, evaluated in code on validated arguments and real data.

Never by the model: no ticket text can talk its way past this. Every rule
evaluated is recorded, passed or tripped, with the numbers it compared.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from agentops.integrations.orders import OrderInfo, get_order_directory
from agentops.money import money_format
from agentops.runtime.readonce import once
from approvals.models import AutonomySetting, PolicyChange, RiskPolicy

AUTO = "auto"
APPROVAL = "approval"
BLOCK = "block"


@dataclass(frozen=True)
class RuleResult:
    rule: str
    tripped: bool
    detail: str
    # What a tripped rule asks for: approval or block.
    effect: str = APPROVAL


@dataclass(frozen=True)
class PolicyDecision:
    outcome: str  # auto / approval / block
    rules: tuple[RuleResult, ...]
    approvals_required: int = 1
    policy_version: PolicyChange | None = None

    def as_list(self) -> list[dict]:
        return [asdict(r) for r in self.rules]

    @property
    def tripped(self) -> list[RuleResult]:
        return [r for r in self.rules if r.tripped]

    @property
    def version_label(self) -> str:
        v = self.policy_version
        return f"{v.label} v{v.version}" if v else "built-in default"


def policy_for(*, tool: str, currency: str) -> RiskPolicy | None:
    """The admin's policy for this tool in this currency, else the tool's any-currency one."""
    # Every tool's policies in one read per task of the agent loop (a handful of rows).
    policies = {
        (p.tool, p.currency): p
        for p in once("risk_policies", lambda: list(RiskPolicy.objects.all()))
    }
    return policies.get((tool, currency.upper())) or policies.get((tool, ""))


def policy_version_in_force(policy: RiskPolicy | None) -> PolicyChange | None:
    if policy is None:
        return None
    # Read once per task of the agent loop, like the policies (PolicyChange is tracked too).
    return once(
        f"policy_version:{policy.pk}",
        lambda: PolicyChange.objects.filter(policy=policy).order_by("-version").first(),
    )


def policy_evaluate(
    *,
    tool: str,
    amount_cents: int | None,
    currency: str = "",
    order: OrderInfo | None = None,
    customer_email: str = "",
    ambiguous: bool = False,
    now: datetime | None = None,
) -> PolicyDecision:
    """Decide whether a validated, side-effecting tool call may run on its own."""
    policy = policy_for(tool=tool, currency=currency)
    if policy is None and (tool != "issue_refund" or amount_cents is None):
        return PolicyDecision(AUTO, (RuleResult("no_policy", False, f"{tool} runs automatically"),))
    now = now or timezone.now()

    def money(cents: int) -> str:
        return money_format(cents=cents, currency=currency)

    rules: list[RuleResult] = []
    approvals_required = 1
    if amount_cents is not None:
        threshold = (
            policy.approval_threshold_cents
            if policy is not None
            else settings.DEFAULT_APPROVAL_THRESHOLD_CENTS
        )
        if policy is not None and policy.block_above_cents is not None:
            ceiling = policy.block_above_cents
            over = amount_cents > ceiling
            rules.append(
                RuleResult(
                    "hard_ceiling",
                    over,
                    f"{money(amount_cents)} {'>' if over else '<='} hard ceiling {money(ceiling)}",
                    BLOCK,
                )
            )
        over = amount_cents > threshold
        rules.append(
            RuleResult(
                "approval_threshold",
                over,
                f"{money(amount_cents)} {'>' if over else '<='} "
                f"approval threshold {money(threshold)}",
            )
        )
        if policy is not None and policy.four_eyes_threshold_cents is not None:
            four = policy.four_eyes_threshold_cents
            over = amount_cents > four
            if over:
                approvals_required = 2
            rules.append(
                RuleResult(
                    "four_eyes",
                    over,
                    f"{money(amount_cents)} {'>' if over else '<='} two-approver threshold "
                    f"{money(four)}",
                )
            )
    if policy is not None and tool == "issue_refund" and amount_cents is not None:
        rules.extend(_rolling_rules(policy, amount_cents, customer_email, now, money))
        rules.extend(_order_rules(policy, order, now))
    if policy is not None and policy.ambiguous_needs_approval:
        rules.append(
            RuleResult(
                "ambiguous_ticket",
                ambiguous,
                "the triage called the ticket ambiguous"
                if ambiguous
                else "the triage did not call the ticket ambiguous",
            )
        )

    tripped = [r for r in rules if r.tripped]
    if any(r.effect == BLOCK for r in tripped):
        outcome = BLOCK
    elif tripped:
        outcome = APPROVAL
    else:
        outcome = AUTO
    return PolicyDecision(
        outcome,
        tuple(rules),
        approvals_required=approvals_required if outcome == APPROVAL else 1,
        policy_version=policy_version_in_force(policy),
    )


def _rolling_rules(policy: RiskPolicy, amount_cents: int, email: str, now: datetime, money):
    if policy.max_refunds_in_window is None and policy.max_total_in_window_cents is None:
        return []
    since = now - timedelta(days=policy.window_days)
    refunds = get_order_directory().refunds_for_customer(email, since=since) if email else []
    days = policy.window_days
    out = []
    if policy.max_refunds_in_window is not None:
        count = len(refunds) + 1
        limit = policy.max_refunds_in_window
        over = count > limit
        out.append(
            RuleResult(
                "customer_refund_count",
                over,
                f"{count} refunds in {days} days with this one {'>' if over else '<='} "
                f"limit {limit}",
            )
        )
    if policy.max_total_in_window_cents is not None:
        total = sum(r.amount_cents for r in refunds) + amount_cents
        limit = policy.max_total_in_window_cents
        over = total > limit
        out.append(
            RuleResult(
                "customer_refund_total",
                over,
                f"{money(total)} refunded in {days} days with this one "
                f"{'>' if over else '<='} limit {money(limit)}",
            )
        )
    return out


def _order_rules(policy: RiskPolicy, order: OrderInfo | None, now: datetime):
    out = []
    if order is None:
        return out
    if policy.undelivered_needs_approval:
        undelivered = order.status != "delivered"
        out.append(
            RuleResult(
                "order_not_delivered",
                undelivered,
                f"order {order.order_id} is {order.status}",
            )
        )
    if policy.old_order_days is not None:
        age = (now - order.placed_at).days
        old = age > policy.old_order_days
        out.append(
            RuleResult(
                "order_age",
                old,
                f"placed {age} days ago {'>' if old else '<='} {policy.old_order_days} days",
            )
        )
    return out


def policy_evaluate_call(*, tool: str, resolved, run) -> PolicyDecision:
    """The runtime's entry: the resolved arguments, the real order, the run's triage."""
    triage = run.triage if isinstance(run.triage, dict) else {}
    return policy_evaluate(
        tool=tool,
        amount_cents=resolved.amount_cents,
        currency=resolved.currency,
        order=resolved.order,
        customer_email=run.ticket.customer_email,
        ambiguous=bool(triage.get("ambiguous")),
    )


# --- the autonomy share ------------------------------------------------------------


@dataclass(frozen=True)
class AutonomyVerdict:
    admitted: bool
    bucket: int
    share_percent: int

    @property
    def reason(self) -> str:
        return (
            f"Routed to a person by the autonomy share: the agent handles {self.share_percent}% "
            f"of tickets and this one is in bucket {self.bucket}."
        )


def ticket_bucket(code) -> int:
    """0..99, fixed per ticket: the same ticket always lands on the same side."""
    digest = hashlib.sha256(str(code).encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


def autonomy_check(*, ticket) -> AutonomyVerdict:
    setting = once("autonomy_setting", lambda: AutonomySetting.objects.filter(pk=1).first())
    share = setting.share_percent if setting is not None else settings.AUTONOMY_SHARE_PERCENT
    bucket = ticket_bucket(ticket.code)
    return AutonomyVerdict(admitted=bucket < share, bucket=bucket, share_percent=share)
