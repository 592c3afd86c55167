"""Risk policy and the actions waiting for a person."""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class RiskPolicy(models.Model):
    """When a tool call may run on its own. Edited by admins, evaluated in code."""

    tool = models.CharField(max_length=64, default="issue_refund")
    currency = models.CharField(max_length=3, help_text="ISO code, e.g. USD")
    approval_threshold_cents = models.PositiveIntegerField(
        help_text="Amounts up to and including this (minor units) run automatically; "
        "above it a person must approve."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "risk policies"
        ordering = ["tool", "currency"]
        constraints = [
            models.UniqueConstraint(
                fields=["tool", "currency"], name="one_policy_per_tool_currency"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tool} {self.currency}: approval above {self.approval_threshold_cents}"


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
    status = models.CharField(max_length=12, choices=Status, default=Status.PENDING)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(blank=True)
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
        ]
        indexes = [
            # The approvals queue: pending actions, oldest first.
            models.Index(fields=["status", "created_at"], name="pending_status_created"),
        ]

    def __str__(self) -> str:
        return f"{self.tool} {self.amount_cents or ''} {self.currency} ({self.status})"
