"""Model prices and the route table, both tuned in the admin."""

from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q


class ModelPrice(models.Model):
    """What a model costs, in US dollars per million tokens (list prices)."""

    model = models.CharField(
        max_length=100,
        unique=True,
        help_text="The model name, or a prefix of it (claude-sonnet-4-5 prices "
        "claude-sonnet-4-5-20250929 too); the longest matching prefix wins.",
    )
    input_per_mtok = models.DecimalField(max_digits=10, decimal_places=4)
    output_per_mtok = models.DecimalField(max_digits=10, decimal_places=4)
    cache_read_per_mtok = models.DecimalField(max_digits=10, decimal_places=4, default=0)
    cache_write_per_mtok = models.DecimalField(max_digits=10, decimal_places=4, default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model"]
        constraints = [
            models.CheckConstraint(
                name="modelprice_not_negative",
                condition=Q(input_per_mtok__gte=0)
                & Q(output_per_mtok__gte=0)
                & Q(cache_read_per_mtok__gte=0)
                & Q(cache_write_per_mtok__gte=0),
            )
        ]

    def __str__(self) -> str:
        return f"{self.model} (${self.input_per_mtok}/${self.output_per_mtok} per MTok)"

    @property
    def prices(self) -> tuple[Decimal, Decimal, Decimal, Decimal]:
        return (
            self.input_per_mtok,
            self.output_per_mtok,
            self.cache_read_per_mtok,
            self.cache_write_per_mtok,
        )


class Route(models.Model):
    """One row of the route table: the first enabled route (by priority) that matches wins.

    Empty conditions match anything; a ticket that no route matches runs on AGENT_MODEL.
    """

    class Ambiguity(models.TextChoices):
        ANY = "any", "Any"
        AMBIGUOUS = "ambiguous", "Ambiguous only"
        CLEAR = "clear", "Clear only"

    name = models.CharField(max_length=100, unique=True)
    priority = models.PositiveIntegerField(
        default=100, help_text="Lower runs first; the first match wins."
    )
    enabled = models.BooleanField(default=True)
    intent = models.CharField(
        max_length=32, blank=True, help_text="refund, question, … (empty: any intent)"
    )
    ambiguity = models.CharField(max_length=10, choices=Ambiguity, default=Ambiguity.ANY)
    min_amount_cents = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Matches when the amount at stake is at least this (minor units).",
    )
    model = models.CharField(max_length=100, help_text="The model that runs the loop.")

    class Meta:
        ordering = ["priority", "pk"]
        indexes = [
            # route_choose: enabled routes in priority order.
            models.Index(fields=["enabled", "priority"], name="route_enabled_priority"),
        ]

    def __str__(self) -> str:
        return f"{self.priority}: {self.name} → {self.model}"

    def matches(self, *, intent: str, ambiguous: bool, amount_cents: int | None) -> bool:
        if self.intent and self.intent != intent:
            return False
        if self.ambiguity == self.Ambiguity.AMBIGUOUS and not ambiguous:
            return False
        if self.ambiguity == self.Ambiguity.CLEAR and ambiguous:
            return False
        return self.min_amount_cents is None or (amount_cents or 0) >= self.min_amount_cents

    def describe(self) -> str:
        parts = []
        if self.intent:
            parts.append(f"intent {self.intent}")
        if self.ambiguity != self.Ambiguity.ANY:
            parts.append(self.get_ambiguity_display().lower())
        if self.min_amount_cents is not None:
            parts.append(f"amount ≥ {self.min_amount_cents}")
        return ", ".join(parts) or "any ticket"


class DailySpend(models.Model):
    """What model and triage calls cost on one UTC day: the daily cap's counter.

    Incremented in the transaction that records a priced call, so the cap is
    checked with one indexed read instead of a sum over the day's spans. A day's
    spend is the sum of its rows, one per shard: each worker process adds to its
    own (agentops.runtime.budget.spend_shard), so that two workers' transactions
    do not wait for each other's on one row, held until each commits.
    """

    day = models.DateField()
    shard = models.PositiveSmallIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=6, default=0)

    class Meta:
        ordering = ["-day", "shard"]
        verbose_name_plural = "daily spend"
        constraints = [
            models.UniqueConstraint(fields=["day", "shard"], name="dailyspend_day_shard")
        ]

    def __str__(self) -> str:
        return f"{self.day} (shard {self.shard}): ${self.cost}"
