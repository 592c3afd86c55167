from django.db import models
from django.db.models import Q
from django.utils import timezone


class ProviderRefund(models.Model):
    """A refund as the simulated provider records it: its side of reconciliation."""

    refund_id = models.CharField(max_length=40, unique=True)  # re_...
    payment_ref = models.CharField(max_length=64, db_index=True)
    amount_cents = models.PositiveIntegerField()
    currency = models.CharField(max_length=3)
    # The provider deduplicates on this, like Stripe's Idempotency-Key.
    idempotency_key = models.CharField(max_length=200, unique=True, null=True, blank=True)
    request_hash = models.CharField(max_length=64, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(amount_cents__gt=0), name="provider_refund_amount_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.refund_id} {self.amount_cents} {self.currency}"


class ScriptedFault(models.Model):
    """A fault the simulated provider injects for one payment, `remaining` more times.

    The demo uses it to make two tickets hit the seed incident deterministically
    (a timeout after the provider committed); tests use it for exact scenarios.
    """

    class Kind(models.TextChoices):
        TIMEOUT_AFTER_COMMIT = "timeout_after_commit"
        RATE_LIMIT = "rate_limit"
        SERVER_ERROR = "server_error"

    payment_ref = models.CharField(max_length=64, db_index=True)
    kind = models.CharField(max_length=32, choices=Kind)
    remaining = models.PositiveIntegerField(default=1)

    def __str__(self) -> str:
        return f"{self.kind} x{self.remaining} on {self.payment_ref}"
