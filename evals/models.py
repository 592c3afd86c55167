"""The regression set, its evaluations, and the shadow-mode switch."""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class RegressionCase(models.Model):
    """A run kept as a test: its ticket, its recorded tool results, and what should happen.

    The ticket is a snapshot, so a case still runs after the original ticket changes
    or its run is pruned.
    """

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=200)
    source_run = models.ForeignKey(
        "agentops.Run",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="regression_cases",
    )
    customer_email = models.EmailField()
    subject = models.CharField(max_length=300)
    body = models.TextField()
    # [{"tool": name, "input": {...}, "result": <content>, "is_error": bool}], in call order:
    # what the read tools answered in the original run, fed back so a case is repeatable.
    recorded_tool_results = models.JSONField(default=list, blank=True)
    # [{"tool": name, "args": {key: value}}]: each must be called, with at least these args.
    expected_tool_calls = models.JSONField(default=list, blank=True)
    # Tool names that must not be called at all (e.g. no refund for this ticket).
    forbidden_tools = models.JSONField(default=list, blank=True)
    # The run's final status; blank: any.
    expected_status = models.CharField(max_length=20, blank=True)
    notes = models.TextField(blank=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["created_at", "id"]
        permissions = [
            # Exact replays and dry-run forks; live ones also need agentops.replay_live.
            ("replay_run", "Can replay and fork runs in dry run"),
        ]

    def __str__(self) -> str:
        return self.name


class EvalRun(models.Model):
    """One pass of the regression set against a prompt version and a model."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    prompt_version = models.ForeignKey(
        "agentops.PromptVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="eval_runs",
    )
    model = models.CharField(max_length=100, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    cases = models.PositiveIntegerField(default=0)
    passed = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=12, decimal_places=6, default=0)

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"Eval {self.started_at:%Y-%m-%d %H:%M} ({self.passed}/{self.cases})"

    @property
    def failed(self) -> int:
        return self.cases - self.passed


class EvalResult(models.Model):
    eval_run = models.ForeignKey(EvalRun, on_delete=models.CASCADE, related_name="results")
    case = models.ForeignKey(RegressionCase, on_delete=models.CASCADE, related_name="results")
    run = models.ForeignKey(
        "agentops.Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # {"status": ..., "tool_calls": [{"tool": ..., "args": {...}}]}
    got = models.JSONField(default=dict, blank=True)
    passed = models.BooleanField(default=False)
    # Why it failed, one sentence each.
    failures = models.JSONField(default=list, blank=True)
    cost = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["eval_run", "case_id"]
        constraints = [
            models.UniqueConstraint(fields=["eval_run", "case"], name="one_result_per_case"),
        ]

    def __str__(self) -> str:
        return f"{self.case} {'pass' if self.passed else 'FAIL'}"


class ShadowSetting(models.Model):
    """Shadow mode: a candidate prompt/model runs in dry run beside production.

    One row (pk=1). Which tickets are shadowed is a hash of the ticket's code, so the
    same ticket is always in or out.
    """

    enabled = models.BooleanField(default=False)
    share_percent = models.PositiveSmallIntegerField(
        default=10, help_text="0 to 100: the share of finished production runs to shadow."
    )
    prompt_version = models.ForeignKey(
        "agentops.PromptVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The candidate prompt; blank: the production one.",
    )
    model = models.CharField(
        max_length=100, blank=True, help_text="The candidate model; blank: the production one."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "shadow mode"
        verbose_name_plural = "shadow mode"
        constraints = [
            models.CheckConstraint(
                condition=Q(share_percent__lte=100), name="shadow_share_at_most_100"
            ),
        ]

    def __str__(self) -> str:
        state = "on" if self.enabled else "off"
        return f"Shadow mode {state}: {self.share_percent}% of tickets"


class ShadowRun(models.Model):
    """A production run and its shadow: the candidate's dry run of the same ticket.

    The shadow itself is a dry-run fork from the first step (the replay engine's
    mode for "the same ticket, another prompt or model, nothing executed").
    """

    production = models.OneToOneField(
        "agentops.Run", on_delete=models.CASCADE, related_name="shadow_link"
    )
    shadow = models.OneToOneField(
        "agentops.Run", on_delete=models.CASCADE, related_name="shadow_of_link"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Shadow of {self.production.code}"
