"""The core records: tickets, the runs that work on them, and the effect ledger."""

import hashlib

from django.db import models
from django.db.models import Q
from django.utils import timezone

from agentops.ids import uuid7


class Ticket(models.Model):
    class Source(models.TextChoices):
        API = "api", "JSON API"
        WEB = "web", "Web form"
        COMMAND = "command", "Management command"
        DEMO = "demo", "Demo seed"

    code = models.UUIDField(default=uuid7, unique=True, editable=False)
    # Intake is idempotent on this: the same external id never makes a second run.
    external_id = models.CharField(max_length=200, unique=True, null=True, blank=True)
    customer_email = models.EmailField()
    subject = models.CharField(max_length=300)
    body = models.TextField()
    source = models.CharField(max_length=16, choices=Source, default=Source.API)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.subject} <{self.customer_email}>"


class PromptVersion(models.Model):
    """A version of what the model is told: the system prompt and the tools' descriptions.

    Versions are records, never edited in place once a run used them, so a run's
    behaviour can be traced to exactly what it was told and a replay can name another.
    """

    name = models.SlugField(max_length=64, unique=True)
    system_prompt = models.TextField()
    # Tool name -> description shown to the model; tools not named keep their built-in one.
    tool_descriptions = models.JSONField(default=dict, blank=True)
    notes = models.TextField(blank=True)
    # The version new production runs use; at most one.
    is_current = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_current"], condition=Q(is_current=True), name="one_current_prompt"
            )
        ]

    def __str__(self) -> str:
        return self.name


class Run(models.Model):
    """One attempt of the agent at a ticket: durable, resumable, claimed by one worker."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        AWAITING_APPROVAL = "awaiting_approval"
        RESOLVED = "resolved"
        ESCALATED = "escalated"
        FAILED = "failed"

    FINAL_STATUSES = (Status.RESOLVED, Status.ESCALATED, Status.FAILED)

    class Mode(models.TextChoices):
        PRODUCTION = "", "Production"
        EXACT = "exact", "Exact replay"
        RERUN = "rerun", "Re-run"
        FORK = "fork", "Fork"
        EVAL = "eval", "Regression case"
        SHADOW = "shadow", "Shadow"

    code = models.UUIDField(default=uuid7, unique=True, editable=False)
    ticket = models.ForeignKey(Ticket, on_delete=models.PROTECT, related_name="runs")
    status = models.CharField(max_length=20, choices=Status, default=Status.QUEUED)
    model = models.CharField(max_length=100, blank=True)
    trace_id = models.CharField(max_length=32, default="", editable=False)

    # The conversation in Messages API shape. `messages` holds every completed
    # turn; `tool_results` holds the answers already given to the last assistant
    # turn's tool calls, so a resumed run never executes a call twice.
    messages = models.JSONField(default=list, blank=True)
    tool_results = models.JSONField(default=list, blank=True)
    triage = models.JSONField(default=dict, blank=True)

    step_count = models.PositiveIntegerField(default=0)
    model_calls = models.PositiveIntegerField(default=0)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=12, decimal_places=6, default=0)

    # The lease: only its holder advances the run; an expired lease can be taken over.
    lease_owner = models.CharField(max_length=100, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    reply = models.TextField(blank=True)
    outcome_reason = models.TextField(blank=True)

    # What the model was told (null: the built-in prompt).
    # Indexed by run_prompt_version (partial) rather than by the FK's own index.
    prompt_version = models.ForeignKey(
        PromptVersion,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="runs",
        db_index=False,
    )
    # Replays, forks, evals and shadow runs point at the run they reproduce or shadow.
    mode = models.CharField(max_length=10, choices=Mode, default=Mode.PRODUCTION, blank=True)
    replay_of = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="replays",
        db_index=False,  # run_replay_of (partial) below
    )
    replay_from_step = models.PositiveIntegerField(null=True, blank=True)
    # Dry run: side effects are recorded as "would have executed" and never executed.
    dry_run = models.BooleanField(default=False)
    # Read-tool results given to a replay instead of live calls: {tool or signature: result}
    # (see agentops.replay.replay_start).
    replay_tool_results = models.JSONField(default=dict, blank=True)
    # An exact replay that departed from its recording: where, what was expected, what
    # happened. Null for a replay that took the recorded path, and for every other run.
    divergence = models.JSONField(null=True, blank=True)
    # Who asked for a replay, fork or re-run (null: production intake, or a command).
    requested_by = models.ForeignKey(
        "auth.User",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,  # run_requested_by (partial) below
    )

    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [
            # A fork with live side effects moves real money; it needs its own permission.
            ("replay_live", "Can replay a run with live side effects"),
        ]
        indexes = [
            # The runs list: newest first, optionally filtered by status.
            models.Index(fields=["status", "-created_at"], name="run_status_created"),
            # (Newest first and created_at ranges without a status: run_created_id, made
            # in traces' migration 0003, which also breaks ties by id.)
            # The beat sweeper: unfinished runs whose lease ran out or never started.
            models.Index(
                fields=["lease_expires_at"],
                name="run_open_lease",
                condition=Q(status__in=["queued", "running"]),
            ),
            # The foreign keys that production runs leave null are indexed only where set,
            # so the hot path's non-HOT updates of a run never write into them:
            # run.replays (a run's replays page) and SET_NULL when a run is deleted.
            models.Index(
                fields=["replay_of"], name="run_replay_of", condition=Q(replay_of__isnull=False)
            ),
            # SET_NULL when a user is deleted.
            models.Index(
                fields=["requested_by"],
                name="run_requested_by",
                condition=Q(requested_by__isnull=False),
            ),
            # PROTECT when a prompt version is deleted, and prompt_version.runs.
            models.Index(
                fields=["prompt_version"],
                name="run_prompt_version",
                condition=Q(prompt_version__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"Run {self.code} ({self.status})"

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL_STATUSES

    @property
    def duration(self):
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None


class Effect(models.Model):
    """The ledger: one row per side effect, written before the call, completed after."""

    class Status(models.TextChoices):
        STARTED = "started"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        # The call may have happened: a timeout after the provider may have committed.
        UNKNOWN = "unknown"

    idempotency_key = models.CharField(max_length=200, unique=True)
    # Indexed with the tool below (effect_ticket_tool), which serves lookups by ticket too.
    ticket = models.ForeignKey(
        Ticket, on_delete=models.PROTECT, related_name="effects", db_index=False
    )
    run = models.ForeignKey(Run, on_delete=models.PROTECT, related_name="effects")
    tool = models.CharField(max_length=64)
    request = models.JSONField()
    request_hash = models.CharField(max_length=64)
    status = models.CharField(max_length=12, choices=Status, default=Status.STARTED)
    attempts = models.PositiveIntegerField(default=0)
    result = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    provider_ref = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [
            # Reconciliation and the finance view: effects of one tool by time.
            models.Index(fields=["tool", "created_at"], name="effect_tool_created"),
            # A ticket's effects of one tool (grounding reads its refunds before every
            # reply): on ticket alone, stale statistics let PostgreSQL AND it with
            # effect_tool_created, reading every refund's entry (3 ms on the bench's 76k).
            models.Index(fields=["ticket", "tool"], name="effect_ticket_tool"),
        ]

    def __str__(self) -> str:
        return f"{self.tool} {self.idempotency_key} ({self.status})"


class ApiToken(models.Model):
    """A bearer token for the JSON API. Only its SHA-256 is stored."""

    name = models.CharField(max_length=100)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=12, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @staticmethod
    def hash(raw: str) -> str:
        return hashlib.sha256(raw.encode()).hexdigest()

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class ConfigToken(models.Model):
    """One row: the version of the admin-edited tables the agent loop keeps per process.

    Database triggers (agentops.db.config_token) replace `token` with a random one
    on every write of those tables, whatever makes it: the admin, .update(), bulk,
    fixtures, migrations, raw SQL. A task that reads the same token as the one its
    process read the tables at uses what it read (agentops.runtime.config_cache).
    """

    token = models.CharField(max_length=64)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(id=1), name="config_token_one_row")]

    def __str__(self) -> str:
        return self.token
