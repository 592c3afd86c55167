"""The agent loop: advance one run, step by step, durably.

A bounded loop (Anthropic SDK tool runner shape): call the model; no tool_use
means finish; otherwise answer each tool call with a tool_result. Every step is
saved with its span in one transaction, fenced by the run's lease, so a worker
that dies is replaced by another that resumes at the first unfinished step
without repeating a paid model call or a side effect.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.db.models import Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from pydantic import ValidationError

from agentops.db import hot
from agentops.db.batch import write_transaction
from agentops.integrations.llm import ModelResponse, get_model_client
from agentops.integrations.payments.codes import customer_meaning
from agentops.models import Effect, Run, conversation_column
from agentops.runtime import grounding, ledger
from agentops.runtime.breaker import OPEN, Verdict, breaker_for, model_downstream
from agentops.runtime.budget import budget_check, day_spend_column, day_spend_read, spend_record
from agentops.runtime.config_cache import config_token_column, config_token_parse
from agentops.runtime.crashpoints import (
    AFTER_GATEWAY_COMMIT,
    AFTER_LEDGER_WRITE,
    AFTER_MODEL_CALL,
    BEFORE_MODEL_CALL,
    crash_point,
)
from agentops.runtime.errors import (
    BUDGET,
    POLICY,
    TERMINAL,
    TRANSIENT,
    VALIDATION,
    Classification,
    ToolError,
    classify,
)
from agentops.runtime.interrupted import run_take_over, spans_mark_interrupted
from agentops.runtime.output import review_response, tool_use_ids
from agentops.runtime.pricing import model_cost, usage_attributes
from agentops.runtime.prompts import prompt_current, prompt_for, ticket_message
from agentops.runtime.readonce import read_once
from agentops.runtime.replaying import Diverged, ReplayPlan, divergence_text
from agentops.runtime.retry import backoff_delay, max_attempts
from agentops.runtime.tools import TOOLS, Resolved, Tool, ToolContext, tool_definitions
from agentops.runtime.triage import triage_ticket
from approvals.models import PendingAction
from approvals.policy import APPROVAL, BLOCK, autonomy_check, policy_evaluate_call
from approvals.services import action_propose
from traces.logs import run_log_context
from traces.models import Span
from traces.otel import trace_export_on_commit
from traces.payloads import (
    LEDGER_REQUEST,
    LEDGER_RESULT,
    RUN_TRIAGE,
    TICKET_TEXT,
    resolved_ref,
    tool_result_ref,
    turn_ref,
    turns_ref,
)
from traces.services import (
    OUTCOME_FIELDS,
    root_span_build,
    root_span_id,
    span_build,
    span_finish,
)

logger = logging.getLogger(__name__)

MAX_TOKENS = 1024
# A save less than this after the last renewal keeps the lease as it is: the
# margin before another worker may take over stays within this of the full lease
# (within half of it, for a lease shorter than twice this: see Runner._save).
LEASE_RENEWAL_SLACK = timedelta(seconds=5)
# A reading of today's spend this recent (taken by the claim, or by the transaction
# of the run's last save, after its own spend) stands for the budget check's own read:
# the read moves into a round trip the run makes anyway. Between that transaction and
# the next model call there is at most a tool call of this run.
DAY_SPEND_FRESH_SECONDS = 0.1
_NOT_READ = object()
# A ledger key taken to be new without a read (see Runner._check).
_ASSUMED_NEW = object()
# What run_advance returns for a run parked until its downstream may answer again.
WAITING = "waiting"
DECIDE_PERMISSION = "approvals.decide_pendingaction"


class LeaseLost(Exception):
    """Another worker holds the run now; stop without writing anything more."""


@dataclass
class CallFailed(Exception):
    exc: BaseException
    classification: Classification
    attempts: int

    def __str__(self) -> str:
        return f"{self.classification.error_class}: {self.exc} (after {self.attempts} attempts)"


@dataclass
class Parked(Exception):
    """A downstream's breaker is open or its retry budget is spent: wait, do not call."""

    downstream: str
    verdict: Verdict

    def __str__(self) -> str:
        return f"{self.verdict.reason} {self.downstream}"


class _FirstAdmission:
    """A side effect's first attempt, let through its downstream's breaker at most once.

    Taken before the ledger counts the attempt (ledger.effect_begin's `admit`), so a
    run parked by an open breaker has counted no attempt and saved no attempt span;
    _attempts then uses this verdict for attempt 1 instead of asking again (a
    half-open breaker's single probe is not taken twice).
    """

    def __init__(self, downstream: str) -> None:
        self.downstream = downstream
        self.verdict: Verdict | None = None

    def admit(self) -> None:
        if not self.downstream or self.verdict is not None:
            return
        verdict = breaker_for(self.downstream).admit(retry=False)
        if not verdict.allowed:
            raise Parked(self.downstream, verdict)
        self.verdict = verdict

    def attributes(self) -> dict:
        return self.verdict.attributes(self.downstream) if self.verdict else {}


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_advance(*, run_id: int, worker: str | None = None) -> str:
    """Claim the run and advance it until it finishes, parks or is lost. Returns its status."""
    worker = worker or worker_name()
    run = _claim(run_id=run_id, worker=worker)
    if run is None:
        return "not_claimed"
    # The config token came with the run's row (see _claimed): no read of its own.
    with run_log_context(run=run), read_once(config_token=config_token_parse(run.config_token)):
        status = Runner(run, worker).go()
    if status in Run.FINAL_STATUSES:
        trace_export_on_commit(run_id=run.pk)  # OTLP, when configured; never raises
    return status


# What a claimed run is read with: its ticket and prompt (and the config token).
CLAIMED_WITH = ("ticket", "prompt_version")


def _claim(*, run_id: int, worker: str) -> Run | None:
    """One conditional UPDATE: queued, or running with an expired lease. Zero rows: not ours.

    The same UPDATE stamps started_at on the first claim (one write transaction).
    A queued run is claimed at once, and read back by the same statement with its
    ticket, prompt, the config token and, on PostgreSQL, its conversation
    (hot.update_and_get). Only when the run is
    not queued is its lease read first, so that a takeover knows whose lease it took
    (see run_take_over).
    """
    now = timezone.now()
    claim = {
        "status": Run.Status.RUNNING,
        "lease_owner": worker,
        "lease_expires_at": now + timedelta(seconds=settings.RUN_LEASE_SECONDS),
        "updated_at": now,
    }
    run = hot.update_and_get(
        Run,
        {**claim, "started_at": now},
        {"id": run_id, "status": Run.Status.QUEUED},
        unless_set=("started_at",),
        related=CLAIMED_WITH,
        columns=_claimed_columns(),
        # Lost with a crash of the server, the run is queued again, as before the claim.
        durable=settings.RUN_PROGRESS_DURABLE,
    )
    if run is not None:
        _conversation_read(run)
        if run.started_at != now:
            # Queued again after it had started (a decided approval): what a dead
            # holder left started, if anything, is marked.
            spans_mark_interrupted(run=run, worker=worker)
        return run
    expired = Q(lease_expires_at__lt=now) | Q(lease_expires_at__isnull=True)
    held = (
        Run.objects.filter(expired, pk=run_id, status=Run.Status.RUNNING)
        .values("lease_owner", "lease_expires_at")
        .first()
    )
    if held is None:
        return None
    with transaction.atomic():
        # The lease is taken only from the holder just read: zero rows means
        # another worker took it over first.
        claimed = Run.objects.filter(
            expired, pk=run_id, status=Run.Status.RUNNING, lease_owner=held["lease_owner"]
        ).update(**claim, started_at=Coalesce("started_at", Value(now)))
        if not claimed:
            return None
        run = _claimed(run_id)
        spans_mark_interrupted(run=run, worker=worker)  # what a dead holder left started
        run_take_over(
            run=run,
            previous_worker=held["lease_owner"],
            lease_expired_at=held["lease_expires_at"],
            worker=worker,
        )
    return run


def _claimed_columns() -> dict:
    """What a claim reads with the run: the config token, today's spend and, on
    PostgreSQL, the conversation (elsewhere it is read when the run is asked for it)."""
    columns = {"config_token": config_token_column(), "day_spend": day_spend_column()}
    if connection.vendor == "postgresql":
        columns["conversation"] = conversation_column()
    return columns


def _conversation_read(run: Run) -> None:
    if hasattr(run, "conversation"):
        run.conversation_loaded(run.conversation)


def _claimed(run_id: int) -> Run:
    """The claimed run with its ticket and prompt, and _claimed_columns, in one query."""
    run = Run.objects.select_related(*CLAIMED_WITH).annotate(**_claimed_columns()).get(pk=run_id)
    _conversation_read(run)
    return run


class Runner:
    def __init__(self, run: Run, worker: str) -> None:
        self.run = run
        self.worker = worker
        self.ticket = run.ticket
        self._ctx: ToolContext | None = None
        # A read-only tool's answer, and a model step that asked for tools, wait for the
        # next write of the run (see _answer and _defer_step), with the step's spend.
        self._pending_fields: dict = {}
        self._pending_spans: list[Span] = []
        self._pending_spend = Decimal(0)
        self._step_unsaved = False
        # Validation spans of the run (see _corrections): read once, then counted as written.
        self._corrections: int | None = None
        self._counted: set[str] = set()
        # Ledger rows read moments before their transaction (see _check); None: no row;
        # _ASSUMED_NEW: not read, the key taken to be new.
        self._ledger_read: dict[str, Effect | object | None] = {}
        # Set when this task saw the ledger hold the ticket's reply as sent (see finish).
        self._reply_in_ledger = False
        # Replays, forks and re-runs take responses and results from other sources.
        self.replay = ReplayPlan.for_run(run)
        # Today's spend as the claim or the run's last save read it, and when (see
        # _day_spent); a save asks its transaction to read it again as it ends.
        claimed_spend = getattr(run, "day_spend", _NOT_READ)
        self._day_spend_seen: tuple[Decimal, float] | None = (
            None if claimed_spend is _NOT_READ else (claimed_spend or Decimal(0), time.monotonic())
        )
        self._day_spend_wanted = False

    @property
    def ctx(self) -> ToolContext:
        if self._ctx is None:
            self._ctx = ToolContext.for_run(self.run)
            if self.replay is not None:
                self.replay.adapt_context(self._ctx)
        return self._ctx

    @property
    def root_span_id(self) -> str:
        return root_span_id(self.run)

    # --- the loop --------------------------------------------------------------

    def go(self) -> str:
        # Hard bound: every model call is a step, and each step has at most a few tool calls.
        for _ in range(settings.RUN_MAX_STEPS * 8 + 4):
            try:
                outcome = self.step()
            except LeaseLost:
                logger.warning("run %s: lease lost, stopping", self.run.code)
                return "lease_lost"
            except Diverged as diverged:
                return self._end(
                    Run.Status.FAILED,
                    str(diverged),
                    spans=diverged.spans,
                    divergence=diverged.divergence,
                )
            except Parked as parked:
                try:
                    return self._wait(parked)
                except LeaseLost:
                    return "lease_lost"
            except (OperationalError, InterfaceError):
                # The database went away: not the run's failure. Its completed steps are
                # committed; the task tries again once the lease can be taken over.
                raise
            except Exception as exc:
                from celery.exceptions import SoftTimeLimitExceeded

                if isinstance(exc, SoftTimeLimitExceeded):
                    self._release_lease()
                    raise
                logger.exception("run %s failed", self.run.code)
                self._end(Run.Status.FAILED, f"Unexpected error: {type(exc).__name__}: {exc}")
                return Run.Status.FAILED
            if outcome is not None:
                return outcome
        self._end(Run.Status.ESCALATED, "The run did not finish within its step bound.")
        return Run.Status.ESCALATED

    def step(self) -> str | None:
        messages = self.run.messages
        if not messages:
            return self.begin()
        last = messages[-1]
        if last["role"] == "assistant":
            tool_uses = [b for b in last["content"] if b.get("type") == "tool_use"]
            if not tool_uses:
                return self.finish()
            answered = {r["tool_use_id"] for r in self.run.tool_results}
            for tool_use in tool_uses:
                if tool_use.get("id") not in answered:
                    return self.handle_tool_use(tool_use, last)
        return self.model_step()

    def _span(self, **fields) -> Span:
        """A started span of this run, under its root span."""
        return span_build(run=self.run, parent_span_id=self.root_span_id, **fields)

    # --- steps -------------------------------------------------------------------

    def begin(self) -> str | None:
        """Triage the ticket, route it, and open the conversation."""
        autonomy = autonomy_check(ticket=self.ticket)
        if not autonomy.admitted:
            # Outside the autonomy share: straight to a person, before any model call.
            span = self._span(kind=Span.Kind.POLICY, name="autonomy_share", step=0)
            span_finish(
                span,
                output={"bucket": autonomy.bucket, "share_percent": autonomy.share_percent},
                error_class=POLICY,
                error_message=autonomy.reason,
            )
            return self._end(Run.Status.ESCALATED, autonomy.reason, spans=[span])
        if self.replay is not None and self.replay.exact:
            decision = self.replay.triage()
        else:
            exceeded = budget_check(run=self.run, day_spent=self._day_spent())
            refusal = exceeded.reason if exceeded else None
            decision = triage_ticket(self.ticket, budget_refusal=refusal)
        # The root span is written when the run ends (traces.services.root_span_build).
        triage = span_build(
            run=self.run,
            kind=Span.Kind.TRIAGE,
            name="triage",
            step=0,
            model=decision.model,
            # The ticket's text and the run's triage, written with this span: it says so
            # rather than hold them again (traces.payloads).
            input=TICKET_TEXT,
            parent_span_id=self.root_span_id,
        )
        span_finish(
            triage,
            output=RUN_TRIAGE,
            attributes={"route": decision.route_model, **decision.attributes},
            input_tokens=decision.input_tokens,
            output_tokens=decision.output_tokens,
            cost=decision.cost,
        )
        messages = [{"role": "user", "content": ticket_message(self.ticket)}]
        with self._transaction(progress=True):
            self._save(
                messages=messages,
                triage=decision.as_dict(),
                # A replay may name its model; a production run's is chosen by the route.
                model=self.run.model or decision.route_model,
                prompt_version=self.run.prompt_version
                if self.run.prompt_version_id or self.run.mode == Run.Mode.EXACT
                else prompt_current(),
                input_tokens=decision.input_tokens,
                output_tokens=decision.output_tokens,
                cost=decision.cost,
            )
            self._store([triage])
            spend_record(cost=decision.cost)
        # A run that begins has made no model call: nothing of it was corrected yet.
        self._corrections = 0

    def model_step(self) -> str | None:
        run = self.run
        if run.model_calls >= settings.RUN_MAX_STEPS:
            return self._end(
                Run.Status.ESCALATED,
                f"Step limit reached: {run.model_calls} model calls without finishing.",
            )
        model = run.model or settings.AGENT_MODEL
        step = run.model_calls + 1
        if self._step_unsaved:
            # The previous step is written before this call is made: a crash during the
            # call repeats this call only, never one that was already answered.
            with self._transaction(progress=True):
                self._save()
        stopped = self._budget_or_corrections(step=step, model=model)
        if stopped is not None:
            return stopped
        conversation = list(run.messages)
        if run.tool_results:
            conversation.append({"role": "user", "content": list(run.tool_results)})
        sent_new = _sent_new(conversation)
        recorded = self.replay.model_client(step=step, model=model) if self.replay else None
        client = recorded or get_model_client(model)
        prompt = prompt_for(run.prompt_version)

        def call() -> ModelResponse:
            crash_point(BEFORE_MODEL_CALL)
            return client.create(
                model=model,
                system=prompt.system,
                messages=conversation,
                tools=tool_definitions(prompt.tool_descriptions),
                max_tokens=MAX_TOKENS,
            )

        try:
            response, span = self._attempts(
                kind=Span.Kind.MODEL,
                name="messages.create",
                step=step,
                model=model,
                span_input={"messages": sent_new},
                call=call,
                # No side effect: the span is written once, with the step it belongs to.
                open_first=False,
                # A recorded response is no call to the provider: it neither waits for the
                # provider's breaker nor teaches it anything (a replayed 500 is history).
                downstream="" if recorded else model_downstream(model),
            )
        except CallFailed as failed:
            if failed.classification.transient:
                return self._end(Run.Status.ESCALATED, f"The model was unavailable: {failed}")
            return self._end(Run.Status.FAILED, f"The model request was rejected: {failed}")
        crash_point(AFTER_MODEL_CALL)

        usage = response.usage or {}
        input_tokens = int(usage.get("input_tokens", 0))
        output_tokens = int(usage.get("output_tokens", 0))
        cost = model_cost(model, usage)
        reviewed = review_response(response, taken_ids=tool_use_ids(run.messages))
        assistant = {"role": "assistant", "content": reviewed.content}
        # The messages sent and the answer are turns written with this span: it says
        # which (traces.payloads), rather than hold them again. A failed attempt's
        # span, written without them, keeps its copy.
        if sent_new:
            span.input = turns_ref(len(conversation) - len(sent_new), len(conversation) - 1)
        span_finish(
            span,
            output=turn_ref(len(conversation), stop_reason=response.stop_reason),
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost=cost,
            error_class=VALIDATION if reviewed.problem else "",
            error_message=reviewed.problem,
            # The stop reason is in the output, with the turn (one copy).
            attributes={
                "response_id": response.id,
                "prompt_version": prompt.label,
                **usage_attributes(model, usage),
                **({"source": "recording"} if recorded else {}),
            },
        )
        follow_up = [reviewed.follow_up] if reviewed.follow_up else []
        advanced = {
            "messages": conversation + [assistant] + follow_up,
            "tool_results": reviewed.tool_results,
            "model_calls": run.model_calls + 1,
            "step_count": run.step_count + 1,
            "input_tokens": run.input_tokens + input_tokens,
            "output_tokens": run.output_tokens + output_tokens,
            "cost": run.cost + cost,
        }
        # The turn is over: the run ends in the same transaction as the step.
        ends = reviewed.refusal or (
            not follow_up and not any(b.get("type") == "tool_use" for b in reviewed.content)
        )
        if not ends:
            self._defer_step(advanced, span=span, cost=cost)
            return None
        # Progress if the run resolves; an escalation's _end makes it durable.
        with self._transaction(progress=True):
            # One INSERT for this span and those of a deferred answer (see _answer).
            self._pending_spans.append(span)
            # The step's fields go out with the end's, in one UPDATE (see _end).
            self._pending_fields.update(advanced)
            for name, value in advanced.items():
                setattr(run, name, value)
            spend_record(cost=cost)
            if reviewed.refusal:
                return self._end(
                    Run.Status.ESCALATED,
                    f"The model refused to continue: {reviewed.text or '(no text)'}"[:1000],
                )
            return self.finish()

    def _defer_step(self, fields: dict, *, span: Span, cost: Decimal) -> None:
        """Keep a model step that asked for tools for the run's next write.

        That write comes before anything the step asked for happens outside the run: a
        side effect's ledger row is written with it, as is an approval's proposal, or
        a tool's answer; at the latest, it is made before the next model call. A crash
        before it repeats this step's call, as a crash during the call would: what the
        call cost is recorded with the step, in that write.
        """
        for name, value in fields.items():
            setattr(self.run, name, value)
        self._pending_fields.update(fields)
        self._pending_spans.append(span)
        self._pending_spend += cost
        self._step_unsaved = True

    @property
    def _spends(self) -> bool:
        # An exact replay calls nothing and spends nothing: no budget applies to it.
        return self.replay is None or not self.replay.exact

    def _day_spend_saw(self, spent: Decimal) -> None:
        self._day_spend_seen = (spent, time.monotonic())

    def _day_spent(self) -> Decimal | None:
        """Today's spend if the claim or a save of this task read it just now, else None
        (the budget check reads it). Taken once: a second check reads again."""
        seen, self._day_spend_seen = self._day_spend_seen, None
        if seen is None or time.monotonic() - seen[1] > DAY_SPEND_FRESH_SECONDS:
            return None
        return seen[0]

    def _budget_or_corrections(self, *, step: int, model: str) -> str | None:
        """Before a model call: a spent budget or too many corrections escalate the run."""
        exceeded = budget_check(run=self.run, day_spent=self._day_spent()) if self._spends else None
        if exceeded is not None:
            span = self._span(kind=Span.Kind.MODEL, name="budget", step=step, model=model)
            span_finish(
                span,
                output=exceeded.as_dict(),
                error_class=BUDGET,
                error_message=exceeded.reason,
            )
            return self._end(Run.Status.ESCALATED, exceeded.reason, spans=[span])
        corrections = self._corrections_so_far()
        if corrections > settings.RUN_MAX_CORRECTIONS:
            return self._end(
                Run.Status.ESCALATED,
                f"Too many corrections: the model's output was malformed or invalid "
                f"{corrections} times (at most {settings.RUN_MAX_CORRECTIONS} are corrected).",
            )
        return None

    def handle_tool_use(self, tool_use: dict, assistant: dict) -> str | None:
        step = self.run.model_calls
        name = str(tool_use.get("name", ""))
        raw_input = tool_use.get("input")
        validate = self._span(
            kind=Span.Kind.VALIDATE,
            name=name or "(no name)",
            step=step,
            # The arguments as sent are in the model's turn, written with this span
            # (traces.payloads reads them from there).
            input={"tool_use_id": tool_use.get("id")},
            # The span's name is the tool's; only a call without one says what it sent.
            attributes=None if name else {"tool": tool_use.get("name")},
        )
        tool = TOOLS.get(name)
        try:
            if tool is None:
                raise ToolError(
                    f"Unknown tool '{name}'. Available tools: {', '.join(TOOLS)}.",
                    code="unknown_tool",
                )
            if not isinstance(raw_input, dict):
                raise ToolError(
                    f"The input of {name} must be a JSON object, got {type(raw_input).__name__}.",
                    code="input_not_object",
                )
            args = tool.schema.model_validate(raw_input)
            resolved = tool.resolve(args, self.ctx)
            if tool.check is not None:
                self._check(tool, resolved)
        except ValidationError as exc:
            errors = _validation_messages(exc)
            span_finish(
                validate,
                output={"errors": errors},
                error_class=VALIDATION,
                error_message="; ".join(errors),
            )
            return self._answer(
                tool_use,
                {"error": "invalid arguments", "details": errors},
                is_error=True,
                spans=[validate],
            )
        except ToolError as exc:
            span_finish(
                validate,
                output={"code": exc.code},
                error_class=exc.error_class,
                error_message=exc.message,
            )
            return self._answer(
                tool_use,
                {"error": exc.code, "message": exc.message},
                is_error=True,
                spans=[validate],
            )
        span_finish(
            validate,
            output=resolved_ref(raw_input, resolved.args, resolved.notes),
            attributes={"resolved_from": raw_input.get("order_id")} if resolved.notes else None,
        )
        if self.replay is not None:
            self.replay.check_validated(
                step=step, tool_use=tool_use, resolved_args=resolved.args, spans=[validate]
            )

        if tool.ends_run:
            result = tool.execute(resolved, self.ctx, None)
            return self._answer(
                tool_use,
                result,
                is_error=False,
                spans=[validate],
                end=(Run.Status.ESCALATED, f"Escalated by the agent: {resolved.args['reason']}"),
            )
        if not tool.side_effect:
            return self._run_read_tool(tool, tool_use, resolved, validate, step)
        return self._run_side_effect(tool, tool_use, resolved, validate, step, assistant)

    def _check(self, tool: Tool, resolved: Resolved) -> None:
        """The tool's check against live data (a refund: no more than is left to refund),
        unless the ledger already holds the call: a retry of a refund that was made must
        not be refused as "already refunded"; the ledger answers it.

        The ledger is read only when the check refuses: a key whose check passes is
        nearly always new, and is taken to be (see _execute_once, which reads the row
        after all when the insert finds it, or when the breaker would park the run).
        """
        key = tool.idempotency_key(resolved, self.ctx) if tool.idempotency_key else None
        if key is not None and self.replay is not None:
            if not self.replay.in_ledger(key):
                tool.check(resolved, self.ctx)
            return
        try:
            tool.check(resolved, self.ctx)
        except ToolError:
            if key is None:
                raise
            # Kept for the ledger transaction that follows: it need not read the row again.
            effect = hot.instance_where(Effect, {"idempotency_key": key})
            self._ledger_read[key] = effect
            if effect is None:
                raise
            return
        if key is not None:
            self._ledger_read[key] = _ASSUMED_NEW

    def finish(self) -> str:
        """The model ended its turn: resolved only if a grounded reply went out."""
        replied = (
            self._reply_in_ledger
            or Effect.objects.filter(
                ticket_id=self.ticket.pk, tool="send_reply", status=Effect.Status.SUCCEEDED
            ).exists()
        )
        if self.run.dry_run and self.run.reply:
            replied = True  # the reply a dry run would have sent
        if not replied:
            return self._end(
                Run.Status.ESCALATED, "The agent finished without sending the customer a reply."
            )
        return self._end(Run.Status.RESOLVED, "")

    # --- tools ---------------------------------------------------------------------

    def _run_read_tool(
        self, tool: Tool, tool_use: dict, resolved: Resolved, validate: Span, step: int
    ) -> None:
        provided = self._provided(tool, tool_use, resolved, step, spans=[validate])
        if provided is not None:
            return self._answer(
                tool_use,
                provided.content,
                is_error=provided.is_error,
                spans=[validate, provided.span],
            )
        try:
            result, span = self._attempts(
                kind=Span.Kind.TOOL,
                name=tool.name,
                step=step,
                span_input=resolved.args,
                call=lambda: tool.execute(resolved, self.ctx, None),
                open_first=False,
            )
        except CallFailed as failed:
            return self._answer(
                tool_use,
                {
                    "error": failed.classification.code,
                    "message": f"{tool.name} is unavailable right now ({failed.exc}). "
                    "Try later or escalate.",
                },
                is_error=True,
                spans=[validate],
                defer=True,
            )
        # Stored once: the tool_result that goes out with the span holds the answer.
        span_finish(span, output=tool_result_ref(tool_use.get("id"), result))
        return self._answer(tool_use, result, is_error=False, spans=[validate, span], defer=True)

    def _run_side_effect(
        self,
        tool: Tool,
        tool_use: dict,
        resolved: Resolved,
        validate: Span,
        step: int,
        assistant: dict,
    ) -> str | None:
        spans = [validate]
        decision = policy_evaluate_call(tool=tool.name, resolved=resolved, run=self.run)
        policy = self._span(
            kind=Span.Kind.POLICY,
            name=tool.name,
            step=step,
            # What it checked is what the call's validation resolved (traces.payloads).
            input={"tool_use_id": tool_use.get("id")},
        )
        tripped = [r.rule for r in decision.tripped]
        span_finish(
            policy,
            output={
                "outcome": decision.outcome,
                "rules": decision.as_list(),
                "policy_version": decision.version_label,
                "approvals_required": decision.approvals_required,
            },
            error_class=POLICY if decision.outcome == BLOCK else "",
            error_message=", ".join(tripped) if decision.outcome == BLOCK else "",
        )
        spans.append(policy)
        if self.replay is not None:
            self.replay.check_policy(
                step=step, tool=tool.name, args=resolved.args, decision=decision, spans=spans
            )
        if decision.outcome == BLOCK:
            return self._answer(
                tool_use,
                {"error": "blocked_by_policy", "rules": decision.as_list()},
                is_error=True,
                spans=spans,
            )
        if decision.outcome == APPROVAL and not self._settled_in_ledger(tool, resolved):
            verdict = self._approval(tool, tool_use, resolved, decision, spans, step, assistant)
            if verdict is not None:
                return verdict if verdict != "answered" else None

        if tool.is_reply:
            hold = grounding.reply_hold_reason(
                body=resolved.args["body"],
                ticket_id=self.ticket.pk,
                also_refunded_cents=self.replay.dry_refunds_cents() if self.run.dry_run else (),
            )
            if hold:
                reply = self._span(
                    kind=Span.Kind.REPLY,
                    name="grounding",
                    step=step,
                    input=resolved.args,
                )
                span_finish(reply, output={"held": True}, error_class=TERMINAL, error_message=hold)
                spans.append(reply)
                return self._end(
                    Run.Status.ESCALATED,
                    f"Reply held for review: {hold}",
                    spans=spans,
                    held_reply=resolved.args["body"],
                )
        return self._execute_once(tool, tool_use, resolved, spans, step)

    def _approval(self, tool, tool_use, resolved, decision, spans, step, assistant) -> str | None:
        """Returns None to go on and execute, "answered" if a result was given, or a run status."""
        # An exact replay asks no one: the original's decision on the same call stands.
        exact = self.replay is not None and self.replay.exact
        action = (
            PendingAction.objects.filter(
                run_id__in=self.replay.recorded_run_ids() if exact else [self.run.pk],
                tool_use_id=tool_use["id"],
            )
            .select_related("decided_by")
            .first()
        )
        if action is None and exact:
            raise self.replay.missing_approval(
                step=step, tool=tool.name, tool_use=tool_use, spans=spans
            )
        span = self._span(
            kind=Span.Kind.APPROVAL,
            name=tool.name,
            step=step,
            input=resolved.args,
        )
        if action is None and self.run.dry_run:
            # A dry run never asks a person: it records that one would have been asked.
            span_finish(
                span,
                output={"status": "would_need_approval", "rules": decision.as_list()},
                attributes={"dry_run": True},
            )
            spans.append(span)
            return None
        if action is None:
            reasoning = "\n".join(
                b.get("text", "") for b in assistant["content"] if b.get("type") == "text"
            )
            span_finish(span, output={"status": "pending", "rules": decision.as_list()})
            spans.append(span)
            with transaction.atomic():
                action_propose(
                    run=self.run,
                    tool_use_id=tool_use["id"],
                    tool=tool.name,
                    resolved=resolved,
                    decision=decision,
                    reasoning=reasoning,
                )
                self._park(spans)
            return Run.Status.AWAITING_APPROVAL
        if action.status == PendingAction.Status.PENDING:
            with transaction.atomic():
                self._park([])
            return Run.Status.AWAITING_APPROVAL
        if action.args != resolved.args:
            # The approval was for other arguments; it does not carry over.
            span_finish(
                span,
                output={"approved_args": action.args},
                error_class=POLICY,
                error_message="The proposal changed after the decision; not executed.",
            )
            spans.append(span)
            self._answer(
                tool_use,
                {
                    "error": "approval_does_not_match",
                    "message": "The decision was made on other arguments; propose again.",
                },
                is_error=True,
                spans=spans,
            )
            return "answered"
        decided = {
            "status": action.status,
            "by": str(action.decided_by or ""),
            "at": action.decided_at.isoformat() if action.decided_at else None,
            "reason": action.reason,
        }
        if action.status == PendingAction.Status.EXPIRED:
            span_finish(span, output=decided, error_class=POLICY, error_message="approval expired")
            spans.append(span)
            return self._end(Run.Status.ESCALATED, "The approval request expired.", spans=spans)
        if action.status == PendingAction.Status.REJECTED:
            span_finish(
                span, output=decided, error_class=POLICY, error_message="rejected by a person"
            )
            spans.append(span)
            self._answer(
                tool_use,
                {
                    "error": "rejected_by_person",
                    "message": f"A person reviewed this {tool.name} and rejected it: "
                    f"{action.reason}. It was not executed. Tell the customer honestly.",
                },
                is_error=True,
                spans=spans,
            )
            return "answered"
        # Approved. Approval is not authorisation: the approver must still hold the permission.
        approver = action.decided_by
        if approver is None or not approver.is_active or not approver.has_perm(DECIDE_PERMISSION):
            span_finish(
                span,
                output=decided,
                error_class=POLICY,
                error_message="the approver no longer has the permission to approve",
            )
            spans.append(span)
            return self._end(
                Run.Status.ESCALATED, "Approved by someone without the permission.", spans=spans
            )
        span_finish(span, output=decided)
        spans.append(span)
        return None

    def _ledger_begin(
        self,
        tool: Tool,
        key: str,
        resolved: Resolved,
        spans: list[Span],
        step: int,
        first: _FirstAdmission,
        read,
    ):
        """One transaction before the call: the ledger row, the lease, the spans so far.

        Returns (effect, created, mismatch, first_attempt); nothing is written on a
        mismatch, nor when the breaker refuses a new key's first attempt (Parked).
        `read` is what the caller knows of the key's row (see ledger.effect_begin).
        """
        first_attempt: Span | None = None
        try:
            with self._transaction():
                effect, created = ledger.effect_begin(
                    key=key,
                    run=self.run,
                    tool=tool.name,
                    request=resolved.args,
                    admit=first.admit,
                    read=read,
                )
                if created:
                    # A new key is called right after this commit: the ledger row already
                    # counts that attempt, which is what a crash during the call leaves
                    # behind (the trace shows the attempt open from it, and a takeover
                    # writes it interrupted: agentops.runtime.interrupted). Its span is
                    # written once, with the call's outcome.
                    first_attempt = self._span(
                        kind=Span.Kind.TOOL,
                        name=tool.name,
                        step=step,
                        # The arguments are the ledger row's request (traces.payloads).
                        input=LEDGER_REQUEST,
                        attributes={"idempotency_key": key, "ledger": "new", **first.attributes()},
                    )
                # The spans so far go with those a deferred step left pending, in the
                # save's one INSERT (a failed transaction puts the pending ones back).
                self._pending_spans += spans
                self._save()  # renew the lease with the spans so far
                # No model call comes before the run's next save (the call's outcome, a
                # wait or the end), which reads today's spend: none read here.
                self._day_spend_wanted = False
        except ToolError as exc:
            return None, False, exc, None  # raised before anything was sent
        return effect, created, None, first_attempt

    def _execute_once(
        self, tool: Tool, tool_use: dict, resolved: Resolved, spans: list[Span], step: int
    ) -> str | None:
        key = tool.idempotency_key(resolved, self.ctx)
        provided = self._provided(tool, tool_use, resolved, step, spans=spans, key=key)
        if provided is not None:  # an exact replay's recorded result, or a dry run's
            return self._answer(
                tool_use,
                provided.content,
                is_error=provided.is_error,
                spans=[*spans, provided.span],
                reply=resolved.args["body"] if tool.is_reply and not provided.is_error else None,
            )
        downstream = tool.downstream(self.ctx) if tool.downstream else ""
        first = _FirstAdmission(downstream)
        # The row as read moments ago (a refund's whose check refused, see _check). Unread,
        # a key is taken to be new, as it nearly always is (a reply's: one per ticket; a
        # refund's whose check passed), unless inserting it must first take the
        # downstream breaker's admission and nothing says it is new.
        read = self._ledger_read.pop(key, ledger.UNREAD if downstream else None)
        assumed_new = read is _ASSUMED_NEW
        try:
            effect, created, mismatch, first_attempt = self._ledger_begin(
                tool, key, resolved, spans, step, first, None if assumed_new else read
            )
        except Parked:
            if not assumed_new:
                raise
            # The breaker refused a key taken to be new: a row the ledger holds answers
            # without the downstream, so the run parks only if there is none.
            effect, created, mismatch, first_attempt = self._ledger_begin(
                tool, key, resolved, spans, step, first, ledger.UNREAD
            )
        except IntegrityError:
            # The row exists after all (another run's insert landed after our read, or
            # the key was not new): this transaction was void; read the row this time.
            effect, created, mismatch, first_attempt = self._ledger_begin(
                tool, key, resolved, spans, step, first, ledger.UNREAD
            )
        if mismatch is not None:
            span = self._span(
                kind=Span.Kind.TOOL,
                name=tool.name,
                step=step,
                input=resolved.args,
                attributes={"idempotency_key": key},
            )
            span_finish(
                span,
                error_class=TERMINAL,
                error_message=mismatch.message,
                output={"code": mismatch.code},
            )
            return self._answer(
                tool_use,
                {"error": mismatch.code, "message": mismatch.message},
                is_error=True,
                spans=[*spans, span],
            )

        attrs = {"idempotency_key": key, "ledger": "new" if created else effect.status}
        if effect.status == Effect.Status.SUCCEEDED:
            return self._answer_from_ledger(
                tool_use, tool, resolved, effect, step, attrs, replayed=True
            )
        if effect.status == Effect.Status.FAILED:
            return self._answer_from_ledger(
                tool_use, tool, resolved, effect, step, attrs, replayed=True
            )
        if not created and tool.recover is not None:
            # Started or unknown: the provider may have done it. Ask before any new attempt,
            # once the provider answers again (a parked run resumes here).
            self._raise_if_open(downstream)
            found = tool.recover(resolved, self.ctx, key)
            if found is not None:
                ledger.effect_complete(
                    effect,
                    status=Effect.Status.SUCCEEDED,
                    result=found,
                    provider_ref=found.get("refund_id", ""),
                )
                attrs["ledger"] = "recovered from provider"
                return self._answer_from_ledger(
                    tool_use, tool, resolved, effect, step, attrs, replayed=False
                )

        counted = created  # _ledger_begin counted the first attempt of a new key
        attempted = False

        def call() -> dict:
            nonlocal counted, attempted
            if not counted:
                ledger.effect_attempted(effect)
            counted = False
            if attempted and tool.recover is not None:
                # The last attempt may have committed; a provider that ignores keys would pay
                # again, so ask its records first.
                found = tool.recover(resolved, self.ctx, key)
                if found is not None:
                    return found
            attempted = True
            crash_point(AFTER_LEDGER_WRITE)
            return tool.execute(resolved, self.ctx, key)

        try:
            result, span = self._attempts(
                kind=Span.Kind.TOOL,
                name=tool.name,
                step=step,
                span_input=LEDGER_REQUEST,
                call=call,
                attributes=attrs,
                opened=first_attempt,
                admitted=first.verdict,
                downstream=downstream,
            )
        except CallFailed as failed:
            c = failed.classification
            if c.transient:
                error = {"code": c.code, "message": str(failed.exc), "outcome_unknown": True}
                message = (
                    f"{tool.name} could not be confirmed after {failed.attempts} attempts "
                    f"({failed.exc}). It may or may not have happened: do not tell the customer "
                    "it is done; escalate to a person."
                )
                status = Effect.Status.UNKNOWN
            else:
                error = {"code": c.code, "message": str(failed.exc)}
                message = customer_meaning(c.code, str(failed.exc))
                status = Effect.Status.FAILED
            with self._transaction():
                ledger.effect_complete(effect, status=status, error=error)
                return self._answer(
                    tool_use,
                    {"error": c.code, "message": message},
                    is_error=True,
                    spans=[],
                    reply=None,
                )
        crash_point(AFTER_GATEWAY_COMMIT)
        # The result is the ledger row's, completed with this span (traces.payloads).
        span_finish(span, output=LEDGER_RESULT)
        with self._transaction():
            ledger.effect_complete(
                effect,
                status=Effect.Status.SUCCEEDED,
                result=result,
                provider_ref=result.get("refund_id", ""),
            )
            reply = resolved.args["body"] if tool.is_reply else None
            self._reply_in_ledger = self._reply_in_ledger or tool.is_reply
            return self._answer(
                tool_use, result, is_error=False, spans=[span], reply=reply, later=True
            )

    def _answer_from_ledger(
        self, tool_use, tool, resolved, effect, step, attrs, *, replayed
    ) -> None:
        span = self._span(
            kind=Span.Kind.TOOL,
            name=tool.name,
            step=step,
            input=resolved.args,
            attributes=attrs,
        )
        if effect.status == Effect.Status.SUCCEEDED:
            result = dict(effect.result or {})
            if replayed:
                result["note"] = "Already done for this ticket; the recorded result is returned."
            span_finish(span, output=result, attributes={"replayed_from_ledger": replayed})
            reply = resolved.args["body"] if tool.is_reply else None
            self._reply_in_ledger = self._reply_in_ledger or tool.is_reply
            return self._answer(tool_use, result, is_error=False, spans=[span], reply=reply)
        error = effect.error or {}
        span_finish(
            span,
            output=error,
            error_class=TERMINAL,
            error_message=error.get("message", ""),
            attributes={"replayed_from_ledger": True},
        )
        return self._answer(
            tool_use,
            {
                "error": error.get("code", "failed"),
                "message": customer_meaning(error.get("code", ""), error.get("message", "")),
            },
            is_error=True,
            spans=[span],
        )

    # --- attempts and persistence ------------------------------------------------------

    def _attempts(
        self,
        *,
        kind,
        name,
        step,
        call,
        span_input=None,
        model="",
        attributes=None,
        open_first=True,
        opened: Span | None = None,
        admitted: Verdict | None = None,
        downstream="",
    ):
        """Call with bounded retries of transient errors; each attempt is a span.

        Returns (result, span) with the successful attempt's span still open, to be
        finished and saved with the state change. Raises CallFailed otherwise, or
        Parked when the downstream's breaker is open or its retry budget is spent:
        then nothing is called and the run waits (see _wait).
        `opened` is the first attempt's span when the caller already built it (a side
        effect's new key: not saved, the ledger row records the attempt), and
        `admitted` the breaker's verdict the caller already took for that attempt.
        """
        breaker = breaker_for(downstream) if downstream else None
        limit = max_attempts()
        for attempt in range(1, limit + 1):
            guard = {}
            if breaker is not None:
                if attempt == 1 and admitted is not None:
                    verdict = admitted  # admitted once, before the ledger counted it
                else:
                    verdict = breaker.admit(retry=attempt > 1)
                if not verdict.allowed:
                    raise Parked(downstream, verdict)
                guard = verdict.attributes(downstream)
            if attempt == 1 and opened is not None:
                span = opened
            else:
                span = self._span(
                    kind=kind,
                    name=name,
                    step=step,
                    attempt=attempt,
                    model=model,
                    input=span_input,
                    attributes={**(attributes or {}), **guard} if guard else attributes,
                )
                if open_first:
                    # Written before the outside call: a crash leaves it visibly unfinished.
                    self._store([span])
            try:
                result = call()
            except Exception as exc:
                c = classify(exc)
                if c.code in {"SoftTimeLimitExceeded"}:
                    raise
                # The downstream answered (a 4xx is an answer) unless the error is transient.
                state = breaker.record(ok=not c.transient) if breaker is not None else ""
                span_finish(
                    span,
                    error_class=c.error_class,
                    error_message=f"{type(exc).__name__}: {exc}",
                    attributes={
                        "code": c.code,
                        "retry_after": c.retry_after,
                        "outcome_unknown": c.outcome_unknown,
                        **({"breaker.state_after": state} if state else {}),
                    },
                )
                self._store([span])
                if state == OPEN and c.retryable:
                    # This failure opened the breaker: wait for the downstream, do not give up.
                    raise Parked(downstream, breaker.admit(retry=True)) from exc
                if not (c.retryable and attempt < limit):
                    raise CallFailed(exc, c, attempt) from exc
                time.sleep(backoff_delay(attempt, retry_after=c.retry_after))
            else:
                if breaker is not None:
                    breaker.record(ok=True)
                return result, span
        raise AssertionError("unreachable")

    def _raise_if_open(self, downstream: str) -> None:
        if downstream:
            verdict = breaker_for(downstream).peek()
            if not verdict.allowed:
                raise Parked(downstream, verdict)

    def _wait(self, parked: Parked) -> str:
        """Park the run until its downstream may answer: release the lease, come back later.

        The run stays running with nobody holding it and its lease ending at the retry
        time; the task retries itself for then (agentops.tasks), and the sweeper takes
        any run whose lease ended, should that retry be lost. Nothing is failed or
        escalated unless the run has already waited RUN_MAX_PARKS times.
        """
        verdict, downstream = parked.verdict, parked.downstream
        waited = Span.objects.filter(run=self.run, kind=Span.Kind.POLICY).filter(
            Q(name__startswith="circuit_open ") | Q(name__startswith="retry_budget ")
        )
        waits = waited.count() + 1
        now = timezone.now()
        delay = max(verdict.wait_seconds, 0.0) + 0.5  # a margin past the cool-down's end
        retry_at = now + timedelta(seconds=delay)
        span = self._span(
            kind=Span.Kind.POLICY,
            name=str(parked)[:100],
            step=self.run.model_calls,
            attributes={**verdict.attributes(downstream), "retry_at": retry_at.isoformat()},
        )
        output = {
            "reason": verdict.reason,
            "downstream": downstream,
            "breaker_state": verdict.state,
            "retry_at": retry_at.isoformat(),
            "waits": waits,
        }
        if waits > settings.RUN_MAX_PARKS:
            span_finish(span, output=output, error_class=TRANSIENT, error_message=str(parked))
            return self._end(
                Run.Status.ESCALATED,
                f"{downstream} stayed unavailable: the run waited {waits - 1} times.",
                spans=[span],
            )
        span_finish(span, output=output)
        with self._transaction():
            # A read tool's deferred answer (see _answer) is kept, not read again.
            self._update_held(
                {
                    **self._pending_fields,
                    "lease_owner": "",
                    "lease_expires_at": retry_at,
                    "updated_at": now,
                }
            )
            self._pending_fields = {}
            self._store([*self._flush_pending_spans(), span])
        logger.info("run %s waits for %s until %s", self.run.code, downstream, retry_at)
        return WAITING

    def _answer(
        self,
        tool_use: dict,
        content: dict,
        *,
        is_error: bool,
        spans: list[Span],
        reply: str | None = None,
        end: tuple[str, str] | None = None,
        defer: bool = False,
        later: bool = False,
    ) -> str | None:
        """Answer a tool call. With defer (read-only tools only), nothing is written now:

        the answer and its spans go out with the run's next write, in the same
        transaction. A crash before then repeats the read, which changes nothing.
        With later (a side effect's answer, which its ledger row holds, written in
        the caller's transaction), the spans are written now and the run's fields
        with its next write (see _save): a crash before then answers the call again
        from the ledger, as a retry of a call that succeeded is answered.
        """
        if self.replay is not None:
            self.replay.check_answer(
                step=self.run.model_calls,
                tool_use=tool_use,
                content=content,
                is_error=is_error,
                spans=spans,
            )
        block = {
            "type": "tool_result",
            "tool_use_id": tool_use.get("id"),
            "content": json.dumps(content, ensure_ascii=False, default=str),
        }
        if is_error:
            block["is_error"] = True
        fields = {
            "tool_results": [*self.run.tool_results, block],
            "step_count": self.run.step_count + 1,
        }
        if reply is not None:
            fields["reply"] = reply
        if defer and end is None:
            self._defer_fields(fields)
            self._pending_spans.extend(spans)
            return None
        # Inside the caller's write transaction when there is one.
        with self._transaction():
            self._save(later=later and end is None, **fields)
            self._store(spans)
            if end is not None:
                return self._end(*end)
        return None

    def _save(self, *, later: bool = False, **fields) -> None:
        """Save run fields and renew the lease, only if we still hold it.

        Deferred answers (see _answer) are written here too, in the same transaction.
        `later`: what the fields record is written elsewhere in this transaction (a
        side effect's answer, in its ledger row), so unless the lease is due for
        renewal they wait for the run's next write, and the run is only locked.
        """
        now = timezone.now()
        renewal = self._lease_renewal(now)
        if later and renewal is None:
            self._defer_fields(fields)
            self._fence()
            # The next model call's budget check reads today's spend, read here.
            self._day_spend_wanted = bool(settings.DAILY_MAX_COST_USD) and self._spends
            return
        fields = {**self._pending_fields, **fields}
        if renewal is not None:
            fields["lease_expires_at"] = renewal
        elif not fields:
            self._fence()  # before a side effect
            return
        fields["updated_at"] = now
        self._update_held(fields)
        # A save comes before the next model call: its budget check reads this.
        self._day_spend_wanted = bool(settings.DAILY_MAX_COST_USD) and self._spends
        for name, value in fields.items():
            setattr(self.run, name, value)
        self._pending_fields = {}
        self._store(self._flush_pending_spans())

    def _lease_renewal(self, now) -> datetime | None:
        """The lease's new expiry if a save now is to renew it, else None.

        Not renewed again within seconds of the last renewal: lease_expires_at is
        indexed (run_open_lease), so changing it makes a save a non-HOT update that
        writes an entry in every index of the run table.
        """
        lease = timedelta(seconds=settings.RUN_LEASE_SECONDS)
        expires = self.run.lease_expires_at
        # A short lease (tests, chaos runs) is renewed once half of it is gone, so a
        # live worker never runs on a lease that has already expired.
        slack = min(LEASE_RENEWAL_SLACK, lease / 2)
        if expires is None or expires - now < lease - slack:
            return now + lease
        return None

    def _fence(self) -> None:
        """The run's row locked to the end of the open transaction: the lease stays ours
        until its writes commit, as an UPDATE would keep it, without writing a new
        version of the row. The pending spans go with it."""
        hot.lock_one(Run, self._held(), or_raise=self._lease_lost)
        self._store(self._flush_pending_spans())

    def _defer_fields(self, fields: dict) -> None:
        """Run fields set now and written with the run's next write."""
        for name, value in fields.items():
            setattr(self.run, name, value)
        self._pending_fields.update(fields)

    def _store(self, spans: list[Span]) -> None:
        """Write spans: new ones in one INSERT, started ones updated with their outcome."""
        for span in spans:
            if span.pk is not None:
                hot.save_fields(span, OUTCOME_FIELDS)
        hot.insert_many([s for s in spans if s.pk is None])
        if self._corrections is not None:
            for span in spans:
                if span.error_class == VALIDATION and span.span_id not in self._counted:
                    self._counted.add(span.span_id)
                    self._corrections += 1

    def _corrections_so_far(self) -> int:
        """Malformed or invalid model output corrected so far in this run (validation spans).

        Read once per task; the spans this task writes are counted as it writes them.
        """
        if self._corrections is None:
            self._corrections = Span.objects.filter(run=self.run, error_class=VALIDATION).count()
        return self._corrections

    def _held(self) -> dict:
        """The run's row while this worker holds its lease: every write is fenced by it."""
        return {"id": self.run.pk, "lease_owner": self.worker, "status": Run.Status.RUNNING}

    def _update_held(self, fields: dict) -> None:
        """Write run fields if this worker still holds the run's lease (the fence), else
        raise LeaseLost and keep nothing of the write transaction.

        A new conversation (`messages`) is written as its turns not yet written, inserted
        with the fields.
        """
        if "messages" not in fields:
            hot.update_where(Run, fields, where=self._held(), or_raise=self._lease_lost)
            return
        fields = dict(fields)
        self.run.messages = fields.pop("messages")
        hot.update_where(Run, fields, where=self._held(), or_raise=self._lease_lost)
        hot.insert_many(self.run.turns_unwritten())

    def _lease_lost(self) -> LeaseLost:
        return LeaseLost(self.run.pk)

    @contextmanager
    def _transaction(self, *, progress: bool = False) -> Iterator[None]:
        """One write transaction of the run, sent in one round trip (agentops.db.batch).

        `progress`: a write that only records how far the run got (no ledger row, no
        escalation, no approval), which need not wait for its WAL flush unless
        RUN_PROGRESS_DURABLE (write_transaction's durable=False). Lost with a crash of
        the server, the run is as it was a moment before, and is taken up again by the
        sweeper: a model call may be made again, never a side effect, whose ledger row
        is written durably, flushing everything before it.

        Its writes go out when the outermost block ends. If they fail (a ledger key
        inserted meanwhile, a lost lease), what the block took from the pending
        answer (see _answer) is put back, for a retry to write it, and so are the
        conversation's turns it was to write.
        """
        kept = (
            dict(self._pending_fields),
            list(self._pending_spans),
            self._pending_spend,
            self._step_unsaved,
            self.run.turns_written,
        )
        try:
            with write_transaction(durable=not progress or settings.RUN_PROGRESS_DURABLE):
                yield
                if self._day_spend_wanted and self.run.status == Run.Status.RUNNING:
                    # Last, after the transaction's own spend_record.
                    day_spend_read(on_read=self._day_spend_saw)
                self._day_spend_wanted = False
        except BaseException:
            (
                self._pending_fields,
                self._pending_spans,
                self._pending_spend,
                self._step_unsaved,
                self.run.turns_written,
            ) = kept
            raise

    def _flush_pending_spans(self) -> list[Span]:
        """The pending spans, to store in the open transaction, which also records the
        spend of a deferred model step (see _defer_step): the step is written now."""
        spans, self._pending_spans = self._pending_spans, []
        if self._pending_spend:
            spend_record(cost=self._pending_spend)
        self._pending_spend, self._step_unsaved = Decimal(0), False
        return spans

    def _park(self, spans: list[Span]) -> None:
        self._save()
        self._store(spans)
        Run.objects.filter(pk=self.run.pk, lease_owner=self.worker).update(
            status=Run.Status.AWAITING_APPROVAL, lease_owner="", lease_expires_at=None
        )
        self.run.status = Run.Status.AWAITING_APPROVAL

    def _end(
        self,
        status: str,
        reason: str,
        *,
        spans: list[Span] | None = None,
        held_reply: str | None = None,
        divergence: dict | None = None,
    ) -> str:
        if divergence is None and self.replay is not None:
            divergence = self.replay.end_divergence(
                status=status, reason=reason, step=self.run.model_calls
            )
            if divergence is not None:
                status, reason = Run.Status.FAILED, divergence_text(divergence)
        now = timezone.now()
        fields = {
            **self._pending_fields,
            "status": status,
            "outcome_reason": reason,
            "finished_at": now,
            "lease_owner": "",
            "lease_expires_at": None,
            "updated_at": now,
        }
        if divergence is not None:
            fields["divergence"] = divergence
        # Resolved, the run has nothing left to do that a repeat would do twice: its
        # reply is in the ledger. Escalated or failed, a person looks at it.
        with self._transaction(progress=status == Run.Status.RESOLVED):
            self._update_held(fields)
            self._pending_fields = {}
            root = span_finish(
                root_span_build(run=self.run, started_at=self._root_started_at(now)),
                output={"status": status, "held_reply": held_reply}
                if held_reply
                else {"status": status},
                error_class="" if status == Run.Status.RESOLVED else _error_class_of(reason),
                error_message=reason,
                cost=self.run.cost,
                input_tokens=self.run.input_tokens,
                output_tokens=self.run.output_tokens,
            )
            root.ended_at = now
            self._store([*self._flush_pending_spans(), *(spans or []), root])
        for name, value in fields.items():
            setattr(self.run, name, value)
        return status

    def _root_started_at(self, now):
        """When the root span started: the run's first claim, or, for a fork, its
        first copied step (replay._copy_prefix shifts them to end as the fork starts)."""
        started = self.run.started_at or now
        if self.run.mode == Run.Mode.FORK:
            first = (
                Span.objects.filter(run=self.run)
                .order_by("started_at")
                .values_list("started_at", flat=True)
                .first()
            )
            if first is not None:
                started = min(started, first)
        return started

    # --- replays -------------------------------------------------------------------

    def _provided(self, tool, tool_use, resolved, step, *, spans: list[Span], key: str = ""):
        """A result that is not executed (recorded, dry run, given), or None to execute."""
        if self.replay is None:
            return None
        return self.replay.provided(
            tool=tool,
            tool_use=tool_use,
            args=resolved.args,
            step=step,
            key=key,
            span=self._span,
            spans=spans,
        )

    def _settled_in_ledger(self, tool: Tool, resolved: Resolved) -> bool:
        """A re-run asks no one to approve what the ledger already settled for the ticket."""
        if self.replay is None or self.replay.exact or self.run.dry_run:
            return False
        key = tool.idempotency_key(resolved, self.ctx)
        return Effect.objects.filter(
            idempotency_key=key, status__in=[Effect.Status.SUCCEEDED, Effect.Status.FAILED]
        ).exists()

    def _release_lease(self) -> None:
        Run.objects.filter(pk=self.run.pk, lease_owner=self.worker).update(
            lease_expires_at=timezone.now()
        )


def _sent_new(conversation: list[dict]) -> list[dict]:
    """What a model call sends that no earlier span of the run holds: the messages after
    the model's last turn (that turn is the previous model span's output), or all of
    them on the first call."""
    last = max((i for i, m in enumerate(conversation) if m.get("role") == "assistant"), default=-1)
    return conversation[last + 1 :]


def _validation_messages(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        loc = ".".join(str(part) for part in err["loc"]) or "input"
        out.append(f"{loc}: {err['msg']}")
    return out


def _error_class_of(reason: str) -> str:
    lowered = reason.lower()
    if lowered.startswith("budget cap"):
        return BUDGET
    if "unavailable" in lowered:
        return TRANSIENT
    if "approval" in lowered or "reply held" in lowered:
        return POLICY
    return TERMINAL
