"""Spans: every step of a run, written with the state change it describes."""

from django.db import models
from django.db.models import Q

# Every tool call the model makes writes this span first, named after the tool, whether
# its arguments pass or not: the trace search's "used tool X" looks at these.
TOOL_CALL_KIND = "validate"
# The kinds of span whose durations the dashboard shows (in this order).
STEP_LATENCY_KINDS = ["model", "tool", "validate", "triage"]


class Span(models.Model):
    class Kind(models.TextChoices):
        RUN = "run"
        TRIAGE = "triage"
        MODEL = "model"
        VALIDATE = "validate"
        POLICY = "policy"
        TOOL = "tool"
        APPROVAL = "approval"
        REPLY = "reply"

    class Status(models.TextChoices):
        # Written before an outside call; a crash leaves it visibly unfinished.
        STARTED = "started"
        OK = "ok"
        ERROR = "error"

    class ErrorClass(models.TextChoices):
        NONE = "", "—"
        TRANSIENT = "transient"
        TERMINAL = "terminal"
        VALIDATION = "validation"
        POLICY = "policy"
        BUDGET = "budget"

    # No index of its own: span_run_started, which starts with run, serves every lookup by run.
    run = models.ForeignKey(
        "agentops.Run", on_delete=models.CASCADE, related_name="spans", db_index=False
    )
    # Unique by construction (agentops.ids: the second of an 18-hour lap, then 48
    # random bits; the root's is the first half of the trace id), and only ever looked
    # up with its run (span_run_started): a unique index of its own cost every span an
    # index insert and its WAL (1.7 KB a ticket).
    span_id = models.CharField(max_length=16)
    parent_span_id = models.CharField(max_length=16, blank=True)
    step = models.PositiveIntegerField(default=0, help_text="The run's step this span belongs to")
    kind = models.CharField(max_length=12, choices=Kind)
    name = models.CharField(max_length=100)
    status = models.CharField(max_length=8, choices=Status, default=Status.STARTED)
    error_class = models.CharField(max_length=12, choices=ErrorClass, blank=True, default="")
    error_message = models.TextField(blank=True)
    attempt = models.PositiveSmallIntegerField(default=1)
    model = models.CharField(max_length=100, blank=True)
    # Redacted payloads, or where the run holds them (its turns and tool results, triage,
    # ticket, ledger rows): read them with traces.payloads' span_input and span_output.
    input = models.JSONField(null=True, blank=True)
    output = models.JSONField(null=True, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["started_at", "id"]
        indexes = [
            # The run page: a run's spans in order.
            models.Index(fields=["run", "started_at"], name="span_run_started"),
            # Trace search, "error class X": EXISTS (... WHERE run_id = r.id AND error_class = X)
            # Partial: only failed spans are in it, so it stays small.
            models.Index(
                fields=["error_class", "run"],
                name="span_error_class_run",
                condition=~Q(error_class=""),
            ),
            # Trace search, "used tool X":
            # EXISTS (... WHERE run_id = r.id AND name = X AND kind = TOOL_CALL_KIND).
            # Partial: one entry a tool call (a ticket's policy and tool spans, and their
            # updates, entered it too; 10 entries a ticket, now 3).
            models.Index(
                fields=["name", "run"],
                name="span_name_run",
                condition=Q(kind=TOOL_CALL_KIND),
            ),
            # The dashboard's step latency: durations of one kind's spans started in a
            # range, read from the index alone (ended_at is its last column).
            # Partial: a span written before an outside call enters it when it ends, and
            # the kinds the dashboard does not show (policy, run, ...) never do.
            models.Index(
                fields=["kind", "started_at", "ended_at"],
                name="span_kind_started",
                condition=Q(ended_at__isnull=False, kind__in=STEP_LATENCY_KINDS),
            ),
            # The dashboard's errors per day: failed spans started in a range, by class.
            models.Index(
                fields=["started_at", "error_class"],
                name="span_errors_started",
                condition=~Q(error_class=""),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.name} ({self.status})"

    @property
    def trace_id(self) -> str:
        """The run's: a run's spans are one trace, so no span stores it again (33 bytes
        of every span row and its WAL, issue 8). Set `run` on spans read without it."""
        return self.run.trace_id

    @property
    def duration_ms(self) -> float | None:
        if self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds() * 1000


class AlertRule(models.Model):
    """An admin-set threshold; crossing it opens an incident and notifies once."""

    class Metric(models.TextChoices):
        ERROR_RATE = "error_rate", "Failed runs, % of runs finished in the window"
        P99_LATENCY = "p99_latency", "p99 run latency in the window, seconds"
        SPEND_PER_HOUR = "spend_per_hour", "Spend per hour over the window, $"
        OLDEST_APPROVAL = "oldest_approval", "Age of the oldest pending approval, minutes"

    name = models.CharField(max_length=100)
    metric = models.CharField(max_length=20, choices=Metric)
    threshold = models.DecimalField(
        max_digits=12, decimal_places=4, help_text="An incident opens when the value goes above"
    )
    window_minutes = models.PositiveIntegerField(default=60)
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(threshold__gte=0), name="alert_threshold_not_negative"
            ),
            models.CheckConstraint(condition=Q(window_minutes__gt=0), name="alert_window_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.name}: {self.get_metric_display()} > {self.threshold}"


class Incident(models.Model):
    """A rule's threshold crossed: open until the value comes back under it."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="incidents")
    value = models.DecimalField(max_digits=16, decimal_places=4)
    opened_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            # Once per incident: a second check finds the open one and notifies nobody.
            models.UniqueConstraint(
                fields=["rule"],
                condition=Q(resolved_at__isnull=True),
                name="one_open_incident_per_rule",
            ),
        ]

    def __str__(self) -> str:
        state = "open" if self.resolved_at is None else "resolved"
        return f"{self.rule.name} at {self.value} ({state})"
