"""Risk policy, the actions waiting for a person, and the decisions made on them."""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class RiskPolicy(models.Model):
    """When a tool call may run on its own. Edited by admins, evaluated in code.

    Amounts are minor units of `currency`. Every saved change bumps `version`
    and is kept in PolicyChange (who, when, old, new).
    """

    tool = models.CharField(max_length=64, default="issue_refund")
    currency = models.CharField(
        max_length=3, blank=True, help_text="ISO code, e.g. USD; blank for tools without amounts"
    )
    approval_threshold_cents = models.PositiveIntegerField(
        default=5000,
        help_text="Amounts up to and including this (minor units) run automatically; "
        "above it a person must approve.",
    )
    four_eyes_threshold_cents = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Above this, two different approvers must approve. Blank: one is enough.",
    )
    block_above_cents = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Hard ceiling: above this the action is refused outright. Blank: no ceiling.",
    )
    window_days = models.PositiveIntegerField(
        default=30, help_text="The rolling window of the per-customer limits, in days."
    )
    max_refunds_in_window = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="A customer's refunds in the window, this one included, above which a "
        "person must approve. Blank: no limit.",
    )
    max_total_in_window_cents = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="A customer's refunded total in the window, this one included, above which "
        "a person must approve. Blank: no limit.",
    )
    undelivered_needs_approval = models.BooleanField(
        default=False, help_text="Orders not yet delivered always need a person."
    )
    old_order_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Orders placed more than this many days ago need a person. Blank: no rule.",
    )
    ambiguous_needs_approval = models.BooleanField(
        default=False, help_text="Tickets the triage called ambiguous need a person."
    )
    version = models.PositiveIntegerField(default=0, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "risk policies"
        ordering = ["tool", "currency"]
        constraints = [
            models.UniqueConstraint(
                fields=["tool", "currency"], name="one_policy_per_tool_currency"
            ),
            models.CheckConstraint(
                condition=Q(block_above_cents__isnull=True)
                | Q(block_above_cents__gte=models.F("approval_threshold_cents")),
                name="policy_ceiling_above_threshold",
            ),
            models.CheckConstraint(
                condition=Q(four_eyes_threshold_cents__isnull=True)
                | Q(four_eyes_threshold_cents__gte=models.F("approval_threshold_cents")),
                name="policy_four_eyes_above_threshold",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tool} {self.currency or '(any)'} v{self.version}"


class AutonomySetting(models.Model):
    """The share of incoming tickets the agent handles at all; the rest go to people.

    One row (pk=1). Which tickets are in the share is decided by a hash of the
    ticket's code, so the same ticket always lands on the same side.
    """

    share_percent = models.PositiveSmallIntegerField(
        default=100, help_text="0 to 100: the share of new tickets the agent may work on."
    )
    version = models.PositiveIntegerField(default=0, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "autonomy share"
        verbose_name_plural = "autonomy share"
        constraints = [
            models.CheckConstraint(
                condition=Q(share_percent__lte=100), name="autonomy_share_at_most_100"
            ),
        ]

    def __str__(self) -> str:
        return f"The agent handles {self.share_percent}% of tickets (v{self.version})"


class PolicyChange(models.Model):
    """Append-only: one row per saved change of a risk policy or the autonomy share."""

    class Subject(models.TextChoices):
        RISK_POLICY = "risk_policy", "Risk policy"
        AUTONOMY = "autonomy", "Autonomy share"

    subject = models.CharField(max_length=16, choices=Subject)
    policy = models.ForeignKey(
        RiskPolicy, on_delete=models.SET_NULL, null=True, blank=True, related_name="changes"
    )
    label = models.CharField(max_length=100, help_text="e.g. issue_refund USD")
    version = models.PositiveIntegerField()
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    changed_at = models.DateTimeField(default=timezone.now)
    old = models.JSONField(null=True, blank=True, help_text="Values before; empty when created")
    new = models.JSONField()

    class Meta:
        ordering = ["-changed_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["subject", "label", "version"], name="one_change_per_version"
            ),
        ]
        indexes = [
            # The version in force: the latest change of one policy.
            models.Index(fields=["policy", "-version"], name="policychange_policy_version"),
        ]

    def __str__(self) -> str:
        return f"{self.label} v{self.version}"


class RejectReason(models.Model):
    """Why a person rejected an action: an admin-editable list, so rejections can be counted."""

    code = models.SlugField(max_length=40, unique=True)
    label = models.CharField(max_length=100)
    active = models.BooleanField(default=True)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["position", "label"]

    def __str__(self) -> str:
        return self.label


class ApprovalLimit(models.Model):
    """The most a user (or a group's members) may approve in one currency, in minor units.

    A user's own row wins over their groups'; among groups the highest applies.
    No row: the user may not approve in that currency.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="approval_limits",
    )
    group = models.ForeignKey(
        "auth.Group",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="approval_limits",
    )
    currency = models.CharField(max_length=3, help_text="ISO code, e.g. USD")
    max_amount_cents = models.PositiveIntegerField()

    class Meta:
        ordering = ["currency", "max_amount_cents"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(user__isnull=False) & Q(group__isnull=True))
                | (Q(user__isnull=True) & Q(group__isnull=False)),
                name="limit_for_a_user_or_a_group",
            ),
            models.UniqueConstraint(fields=["user", "currency"], name="one_limit_per_user"),
            models.UniqueConstraint(fields=["group", "currency"], name="one_limit_per_group"),
        ]

    def __str__(self) -> str:
        return f"{self.user or self.group}: {self.currency} {self.max_amount_cents}"


class PendingAction(models.Model):
    """A side-effecting tool call the policy held for a person to decide."""

    class Status(models.TextChoices):
        PENDING = "pending"
        APPROVED = "approved"
        REJECTED = "rejected"
        EXPIRED = "expired"

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    run = models.ForeignKey(
        "agentops.Run", on_delete=models.PROTECT, related_name="pending_actions"
    )
    tool_use_id = models.CharField(max_length=100)
    tool = models.CharField(max_length=64)
    # Bound to exactly these validated arguments: another proposal is another action.
    args = models.JSONField()
    amount_cents = models.PositiveIntegerField(null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    rules = models.JSONField(default=list, help_text="Each rule evaluated: name, tripped, detail")
    reasoning = models.TextField(blank=True, help_text="The agent's text before the call")
    policy_version = models.ForeignKey(
        PolicyChange,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="The policy version that held the action (blank: the built-in default)",
    )
    approvals_required = models.PositiveSmallIntegerField(default=1)
    # Four-eyes: the first of two approvals; the second must come from someone else.
    first_approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    first_approved_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=12, choices=Status, default=Status.PENDING)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(blank=True)
    reason_code = models.ForeignKey(
        RejectReason, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at"]
        permissions = [("decide_pendingaction", "Can approve or reject pending actions")]
        constraints = [
            models.UniqueConstraint(fields=["run", "tool_use_id"], name="one_action_per_tool_call"),
            models.CheckConstraint(
                condition=Q(amount_cents__isnull=True) | Q(amount_cents__gt=0),
                name="pending_amount_positive",
            ),
            models.CheckConstraint(
                condition=Q(approvals_required__in=[1, 2]), name="pending_one_or_two_approvals"
            ),
        ]
        indexes = [
            # The approvals queue: pending actions, oldest first.
            models.Index(fields=["status", "created_at"], name="pending_status_created"),
            # The history of decided actions, newest first.
            models.Index(fields=["-decided_at"], name="pending_decided"),
        ]

    def __str__(self) -> str:
        return f"{self.tool} {self.amount_cents or ''} {self.currency} ({self.status})"


class Decision(models.Model):
    """Append-only audit of every decision on a pending action (no edit, no delete)."""

    class Verdict(models.TextChoices):
        FIRST_APPROVAL = "first_approval", "First of two approvals"
        APPROVED = "approved"
        REJECTED = "rejected"
        EXPIRED = "expired"

    action = models.ForeignKey(PendingAction, on_delete=models.PROTECT, related_name="decisions")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="Blank: the system (expiry)",
    )
    verdict = models.CharField(max_length=16, choices=Verdict)
    reason_code = models.ForeignKey(
        RejectReason, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    comment = models.TextField(blank=True)
    policy_version = models.ForeignKey(
        PolicyChange,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="The policy in force when the decision was made (blank: the built-in default)",
    )
    approver_limit_cents = models.PositiveIntegerField(
        null=True, blank=True, help_text="The actor's approval limit in the action's currency then"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            # A final verdict happens once per action, whoever races for it.
            models.UniqueConstraint(
                fields=["action"],
                condition=Q(verdict__in=["approved", "rejected", "expired"]),
                name="one_final_decision_per_action",
            ),
            models.UniqueConstraint(
                fields=["action"],
                condition=Q(verdict="first_approval"),
                name="one_first_approval_per_action",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.verdict} by {self.actor or 'the system'}"
