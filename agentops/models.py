"""The core records: tickets, the runs that work on them, and the effect ledger."""

import hashlib

from django.db import models, transaction
from django.db.models import Case, F, Q, When
from django.db.models.expressions import RawSQL
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

    # The conversation in Messages API shape is kept as the run's turns (see Turn and
    # `messages` below); `tool_results` holds the answers already given to the last
    # assistant turn's tool calls, so a resumed run never executes a call twice.
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
    # The cost of a finished run (null before it finishes), kept by the database: what
    # the runs list sorts and filters by cost on (index run_final_cost). An index on
    # `cost` itself took an entry at every model step's save of a priced model, the
    # save's only change to an indexed column, so no such save was a HOT update.
    final_cost = models.GeneratedField(
        expression=Case(When(finished_at__isnull=False, then=F("cost"))),
        output_field=models.DecimalField(max_digits=12, decimal_places=6),
        db_persist=True,
    )

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

    def save(self, *args, **kwargs) -> None:
        # Only a conversation set or read on this instance can have turns to write.
        if "_conversation" not in self.__dict__ or len(self.messages) == self.turns_written:
            super().save(*args, **kwargs)
            return
        with transaction.atomic(using=kwargs.get("using")):
            super().save(*args, **kwargs)
            Turn.objects.bulk_create(self.turns_unwritten())

    def refresh_from_db(self, using=None, fields=None, from_queryset=None) -> None:
        super().refresh_from_db(using=using, fields=fields, from_queryset=from_queryset)
        if fields is None:
            # Read again when next asked for, as the fields were.
            self.__dict__.pop("_conversation", None)
            self.__dict__.pop("_turns_written", None)

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL_STATUSES

    @property
    def is_replay(self) -> bool:
        """A replay, fork, eval or shadow run of another run (not a production run)."""
        return bool(self.replay_of_id) and self.mode != self.Mode.PRODUCTION

    @property
    def duration(self):
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None

    # --- the conversation ----------------------------------------------------------
    # Read from the run's turns once per instance (or from prefetch_related("turns")),
    # and only ever extended: a run's conversation grows by whole turns, each written
    # once (see Turn). Setting `messages` keeps the new turns in memory; save() writes
    # them, and the agent loop writes them with the step that made them (turns_unwritten).

    @property
    def messages(self) -> list[dict]:
        """Every completed turn of the conversation, in order."""
        if "_conversation" not in self.__dict__:
            self.conversation_loaded(self._turns_read())
        return self.__dict__["_conversation"]

    @messages.setter
    def messages(self, value: list[dict]) -> None:
        written = self.turns_written
        if len(value) < written:
            raise ValueError(
                f"A run's conversation only grows: {written} turns are saved, {len(value)} given."
            )
        self.__dict__["_conversation"] = list(value)

    @property
    def turns_written(self) -> int:
        """How many turns of the conversation are in the database."""
        if "_turns_written" not in self.__dict__:
            self.conversation_loaded(self._turns_read())
        return self.__dict__["_turns_written"]

    @turns_written.setter
    def turns_written(self, count: int) -> None:
        self.__dict__["_turns_written"] = count

    def conversation_loaded(self, messages: list[dict] | None) -> None:
        """The conversation as the database holds it, read with the run (see
        conversation_column): no query of its own."""
        self.__dict__["_conversation"] = list(messages or [])
        self.__dict__["_turns_written"] = len(self.__dict__["_conversation"])

    def turns_unwritten(self) -> list["Turn"]:
        """The turns of the conversation not in the database yet, to insert; they count
        as written from now on (a caller whose write fails sets turns_written back)."""
        new = [
            Turn(run=self, seq=seq, message=message)
            for seq, message in enumerate(self.messages[self.turns_written :], self.turns_written)
        ]
        self.turns_written = len(self.messages)
        return new

    def _turns_read(self) -> list[dict]:
        if self.pk is None:
            return []
        prefetched = getattr(self, "_prefetched_objects_cache", {}).get("turns")
        turns = (
            sorted(prefetched, key=lambda t: t.seq)
            if prefetched is not None
            else Turn.objects.filter(run_id=self.pk).order_by("seq")
        )
        return [t.message for t in turns]


class Turn(models.Model):
    """One message of a run's conversation, written once, in the step that made it.

    The conversation used to be a column of the run, and each of a ticket's updates of
    its run row wrote the whole growing history into the WAL again (issue 8: 13.5 KB
    a ticket for the run table alone). A turn is inserted once and never updated.
    """

    pk = models.CompositePrimaryKey("run_id", "seq")
    # The primary key's index leads with the run: it serves run.turns and the cascade.
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="turns", db_index=False)
    seq = models.PositiveIntegerField()
    message = models.JSONField()

    class Meta:
        ordering = ["run", "seq"]

    def __str__(self) -> str:
        return f"Turn {self.seq} of run {self.run_id}"


def conversation_column() -> RawSQL:
    """A run's conversation as a column of a query of runs (the claim): on PostgreSQL one
    JSON array of its turns, NULL for none. Its run is the query's agentops_run row."""
    run, turn = Run._meta.db_table, Turn._meta.db_table
    return RawSQL(  # noqa: S611 - identifiers from model metadata, no values
        f"SELECT jsonb_agg(message ORDER BY seq) FROM {turn} WHERE run_id = {run}.id",  # noqa: S608
        [],
        output_field=models.JSONField(),
    )


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
