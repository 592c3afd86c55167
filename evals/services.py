"""Writes: start a replay, keep a run as a regression case, run the set, shadow a run."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from agentops.models import PromptVersion, Run
from agentops.runtime.loop import run_advance
from agentops.runtime.readonce import once
from agentops.runtime.tools import TOOLS
from evals import engine
from evals.checks import case_check
from evals.compare import FREE_TEXT_ARGS, run_steps
from evals.models import EvalResult, EvalRun, RegressionCase, ShadowRun, ShadowSetting
from traces.models import Span
from traces.payloads import span_output

logger = logging.getLogger(__name__)

REPLAY_PERMISSION = "evals.replay_run"
# The engine's own: a live fork moves real money, and a re-run executes through the ledger.
LIVE_PERMISSION = "agentops.replay_live"
REPLAY_MODES = (Run.Mode.EXACT, Run.Mode.RERUN, Run.Mode.FORK)


class ReplayRefused(Exception):
    """A replay that cannot start; the message says why, for the person who asked."""


def run_replay_start(
    *,
    run: Run,
    user: Any,
    mode: str,
    from_step: int | None = None,
    model: str = "",
    prompt_version: PromptVersion | None = None,
    live: bool = False,
) -> Run:
    """Check who asks and what, then hand the replay to the engine.

    Exact replays and forks are dry runs unless `live`; a re-run executes side effects
    through the ledger (what the original did is not done twice, anything new is), so
    it needs the live permission too.
    """
    if not user.has_perm(REPLAY_PERMISSION):
        raise ReplayRefused("You do not have the permission to replay runs.")
    if mode not in REPLAY_MODES:
        raise ReplayRefused(f"Unknown replay mode {mode!r}.")
    if (live or mode == Run.Mode.RERUN) and not user.has_perm(LIVE_PERMISSION):
        what = "re-run (side effects go through the ledger for real)" if not live else "replay live"
        raise ReplayRefused(
            f"You do not have the permission to {what}; a dry-run fork from step 1 "
            "asks the model again without executing anything."
        )
    if not run.is_final:
        raise ReplayRefused(
            f"The run is still {run.get_status_display().lower()}: replay it once it has finished."
        )
    if mode != Run.Mode.FORK:
        from_step = None
    try:
        return engine.replay(
            run,
            mode=mode,
            from_step=from_step,
            model=model or None,
            prompt_version=prompt_version,
            live=live,
            user=user,
        )
    except engine.ReplayError as exc:  # the engine's word on a replay it cannot do
        raise ReplayRefused(str(exc)) from exc


# --- the regression set --------------------------------------------------------------


def _decision_args(args: Any) -> dict:
    if not isinstance(args, dict):
        return {}
    return {k: v for k, v in args.items() if k not in FREE_TEXT_ARGS}


def case_defaults_from_run(*, run: Run) -> dict[str, Any]:
    """What a new case expects, taken from the run: its side effects and its final status.

    Only decision arguments are kept (a reply's wording is never expected word for
    word); the engineer edits the rest.
    """
    calls = [c for step in run_steps(messages=run.messages or []) for c in step.calls]
    expected = [
        {"tool": c.tool, "args": _decision_args(c.args)}
        for c in calls
        if c.tool in TOOLS and (TOOLS[c.tool].side_effect or TOOLS[c.tool].ends_run)
    ]
    return {
        "recorded_tool_results": recorded_tool_results(run=run),
        "name": run.ticket.subject[:200],
        "expected_tool_calls": expected,
        "forbidden_tools": [],
        "expected_status": run.status if run.is_final else "",
        "notes": "",
    }


def recorded_tool_results(*, run: Run) -> list[dict]:
    """What the read tools answered in the run, in call order, to feed back on replay.

    From the tool spans: their input is the arguments as resolved (a tracking number
    already turned into its order), which is what the engine keys given results by.
    """
    read_tools = [name for name, tool in TOOLS.items() if not tool.side_effect]
    spans = run.spans.filter(
        kind=Span.Kind.TOOL, status=Span.Status.OK, name__in=read_tools
    ).order_by("started_at", "id")
    # Their output as the trace reads it: the tool_result the model was given holds it.
    recorded = [(span, span_output(span)) for span in spans]
    return [
        {"tool": span.name, "input": span.input, "result": result}
        for span, result in recorded
        if isinstance(span.input, dict) and isinstance(result, dict)
    ]


def case_create(
    *,
    run: Run,
    user: Any,
    name: str,
    expected_tool_calls: list[dict],
    forbidden_tools: list[str],
    expected_status: str,
    notes: str = "",
    recorded: list[dict] | None = None,
) -> RegressionCase:
    """A case from a run; `recorded`: the read tools' results as edited (default: the run's)."""
    ticket = run.ticket
    return RegressionCase.objects.create(
        name=name,
        source_run=run,
        customer_email=ticket.customer_email,
        subject=ticket.subject,
        body=ticket.body,
        recorded_tool_results=recorded if recorded is not None else recorded_tool_results(run=run),
        expected_tool_calls=expected_tool_calls,
        forbidden_tools=forbidden_tools,
        expected_status=expected_status,
        notes=notes,
        created_by=user if getattr(user, "pk", None) else None,
    )


def _engine_tool_results(case: RegressionCase) -> dict:
    """The recorded results as the engine takes them: {call signature: result}."""
    return {
        engine.tool_signature(r["tool"], r["input"]): r["result"]
        for r in case.recorded_tool_results
        if isinstance(r, dict) and isinstance(r.get("input"), dict) and "result" in r
    }


@dataclass
class _CaseOutcome:
    run: Run | None
    got: dict
    passed: bool
    failures: list[str]
    cost: Decimal


def _eval_case(
    case: RegressionCase, *, prompt_version: PromptVersion | None, model: str, user: Any
) -> _CaseOutcome:
    if case.source_run is None:
        return _CaseOutcome(None, {}, False, ["the case's source run was deleted"], Decimal(0))
    try:
        run = engine.dry_rerun(
            case.source_run,
            mode=Run.Mode.EVAL,
            model=model or None,
            prompt_version=prompt_version,
            tool_results=_engine_tool_results(case),
            inline=True,
        )
        if not run.is_final:
            # Finish it here: the command's answer is the result. A worker that also got
            # a task for it finds the run claimed or finished (one conditional claim).
            run_advance(run_id=run.pk)
            run.refresh_from_db()
    except Exception as exc:  # one broken case must not stop the set; it fails, with why
        logger.exception("eval: case %s could not run", case.pk)
        return _CaseOutcome(
            None, {}, False, [f"could not run: {type(exc).__name__}: {exc}"], Decimal(0)
        )
    check = case_check(
        expected_tool_calls=case.expected_tool_calls,
        forbidden_tools=case.forbidden_tools,
        expected_status=case.expected_status,
        status=run.status,
        messages=run.messages,
    )
    if not run.is_final:
        check.failures.append(f"the run did not finish ({run.status})")
    return _CaseOutcome(run, check.got, not check.failures, check.failures, run.cost)


def eval_run_execute(
    *,
    cases: list[RegressionCase],
    prompt_version: PromptVersion | None = None,
    model: str = "",
    user: Any = None,
) -> EvalRun:
    """Run each case in dry run, check it, and keep every result."""
    eval_run = EvalRun.objects.create(
        prompt_version=prompt_version,
        model=model,
        created_by=user if getattr(user, "pk", None) else None,
    )
    passed, cost = 0, Decimal(0)
    for case in cases:
        outcome = _eval_case(case, prompt_version=prompt_version, model=model, user=user)
        EvalResult.objects.create(
            eval_run=eval_run,
            case=case,
            run=outcome.run,
            got=outcome.got,
            passed=outcome.passed,
            failures=outcome.failures,
            cost=outcome.cost,
        )
        passed += outcome.passed
        cost += outcome.cost
    EvalRun.objects.filter(pk=eval_run.pk).update(
        cases=len(cases), passed=passed, cost=cost, finished_at=timezone.now()
    )
    eval_run.refresh_from_db()
    return eval_run


# --- shadow mode ---------------------------------------------------------------------


def shadow_bucket(code) -> int:
    """0..99, fixed per ticket, and independent of the autonomy share's bucket."""
    digest = hashlib.sha256(f"shadow:{code}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


def shadow_after_production(*, run_id: int) -> Run | None:
    """After a production run ends: start its shadow (dry run) if the ticket is in the share.

    The shadow is enqueued like any run. Never raises: shadow mode must not disturb
    production.
    """
    try:
        # Kept per process while the config token holds (agentops.runtime.readonce).
        setting = once(
            "shadow_setting",
            lambda: ShadowSetting.objects.select_related("prompt_version").filter(pk=1).first(),
        )
        if setting is None or not setting.enabled or setting.share_percent == 0:
            return None
        run = Run.objects.select_related("ticket").get(pk=run_id)
        if run.mode != Run.Mode.PRODUCTION or not run.is_final:
            return None
        if shadow_bucket(run.ticket.code) >= setting.share_percent:
            return None
        if ShadowRun.objects.filter(production=run).exists():
            return None  # a second delivery of the same task
        if not run_steps(messages=run.messages or []):
            # Escalated before any model call (the autonomy share, a budget): a fork
            # from step 1 has nothing to start from.
            logger.info("shadow: run %s has no model step to shadow", run.code)
            return None
        with transaction.atomic():
            shadow = engine.dry_rerun(
                run,
                mode=Run.Mode.SHADOW,
                model=setting.model or None,
                prompt_version=setting.prompt_version,
            )
            # One shadow per run: a racing delivery fails here and rolls its shadow back.
            ShadowRun.objects.create(production=run, shadow=shadow)
        return shadow
    except Exception:
        logger.exception("shadow: could not start a shadow run for run %s", run_id)
        return None
