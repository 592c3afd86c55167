"""Replay, fork and re-run of a recorded run: the regression test of an agent bug fix.

Three modes, each a new Run of the same ticket that points at its original
(`replay_of`); the runtime side is agentops.runtime.replaying.

- exact: the recorded model responses and tool results are played back through
  today's code (validation, policy, approvals, grounding). No model is called,
  nothing is executed, the ledger is not touched. It shows that the same path is
  taken, or stops at the first step where today's code decides otherwise and
  records where (`Run.divergence`, also `replay_divergence(run)`). Runs inline.
- rerun: a new run of the ticket with today's code, prompt and routing, live
  model. Side effects go through the same ledger (keys are ticket + action), so
  what the original already did is returned from the ledger, not done again; the
  trace says "replayed from ledger".
- fork: keeps the recorded conversation before step N (its spans are copied) and
  goes live from step N, optionally with another model or prompt version. Side
  effects are a dry run (recorded as "would have executed", with arguments; no
  ledger row, no provider call) unless `live=True`.
"""

from __future__ import annotations

import json
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from agentops import services
from agentops.models import PromptVersion, Run, Turn
from agentops.runtime.replaying import signature
from agentops.runtime.tools import TOOLS
from traces.models import Span
from traces.services import new_span_id, root_span_id

MODES = (Run.Mode.EXACT, Run.Mode.RERUN, Run.Mode.FORK, Run.Mode.EVAL, Run.Mode.SHADOW)
# A regression case and a shadow run are dry forks from the first model step, labelled
# as what they are so the runs list and the dashboard can tell them from an engineer's fork.
DRY_FORK_MODES = (Run.Mode.EVAL, Run.Mode.SHADOW)
LIVE_PERMISSION = "agentops.replay_live"


class ReplayError(ValueError):
    """A replay that cannot be started as asked; nothing was written."""


def replay_start(
    run: Run,
    *,
    mode: str,
    from_step: int | None = None,
    model: str | None = None,
    prompt_version=None,
    live: bool = False,
    user=None,
    tool_results: dict | None = None,
    inline: bool | None = None,
) -> Run:
    """Create the replayed run of `run` and run it; returns the new Run (refreshed).

    mode: "exact", "rerun" or "fork"; "eval" and "shadow" are dry forks from step 1.
    from_step: fork only, required: the first model step (1 = the first model call)
        that is live; the recorded conversation before it is kept.
    model: rerun and fork: the model that runs the loop instead of the routed
        (rerun) or the original's (fork) one. Not for exact: it plays the recorded responses.
    prompt_version: a PromptVersion or its name. rerun: default the current one;
        fork: default the original's. Not for exact.
    live: fork only: execute side effects for real (through the ledger). Default is a dry
        run. With a `user`, the user needs the permission agentops.replay_live.
    user: who asked (recorded as requested_by).
    tool_results: results for read-only tools, instead of calling them (rerun and fork):
        {key: result}, where key is a tool name ("lookup_order", every call of that tool)
        or a call's signature, the tool name, a colon and its resolved arguments as
        canonical JSON ('lookup_order:{"order_id":"ORD-10023"}'), which wins over the
        name. A result is the dict the model is handed; one with an "error" key is
        handed as an error (is_error). In a dry run, side-effecting tools may be given
        results too (what the model hears "would have" happened); never in a live one.
    inline: run it in this process and return when it stops (default: exact inline;
        rerun and fork enqueued on Celery after commit, like any run).

    Raises ReplayError with a clear message for a bad request; nothing is written then.
    """
    mode = str(mode)
    if mode not in MODES:
        raise ReplayError(f"Unknown mode {mode!r}: use one of {', '.join(MODES)}.")
    if not run.is_final:
        raise ReplayError(
            f"Run {run.code} is {run.status}; only a finished run (resolved, escalated or "
            "failed) can be replayed."
        )
    if mode in DRY_FORK_MODES:
        if live:
            raise ReplayError(f"A {mode} run is a dry run; it never executes side effects.")
        from_step = 1 if from_step is None else from_step
    exact = mode == Run.Mode.EXACT
    fork = mode in (Run.Mode.FORK, *DRY_FORK_MODES)
    if exact and (model or prompt_version or live or tool_results):
        raise ReplayError(
            "An exact replay plays back the recorded responses and results: a model, a prompt "
            "version, live execution and given tool results apply to rerun and fork only."
        )
    if live and not fork:
        raise ReplayError(
            "live applies to a fork: a re-run's side effects always go through the ledger."
        )
    if live and user is not None and not user.has_perm(LIVE_PERMISSION):
        raise ReplayError(f"A live fork needs the permission {LIVE_PERMISSION}.")
    if fork:
        steps = sum(1 for m in run.messages if m.get("role") == "assistant")
        if from_step is None:
            raise ReplayError("A fork needs the step it goes live from (from_step).")
        if not 1 <= from_step <= steps:
            raise ReplayError(
                f"Step {from_step} is not a model step of run {run.code}: "
                f"it has steps 1 to {steps}."
                if steps
                else f"Run {run.code} has no model steps."
            )
    elif from_step is not None:
        raise ReplayError("from_step applies to a fork only.")
    if model is not None:
        model = _check_model(model)
    version = _prompt_version(prompt_version)
    dry_run = fork and not live
    given = _check_tool_results(tool_results, dry_run=dry_run)

    if exact:
        version, model = run.prompt_version, run.model
    elif fork:
        version = version or run.prompt_version
        model = model or run.model

    with transaction.atomic():
        replayed = Run.objects.create(
            ticket=run.ticket,
            trace_id=services.new_trace_id(),
            mode=mode,
            replay_of=run,
            replay_from_step=from_step,
            dry_run=dry_run,
            prompt_version=version,
            model=model or "",
            replay_tool_results=given,
            requested_by=user if user is not None and user.pk else None,
        )
        if fork:
            _copy_prefix(original=run, fork=replayed, step=from_step)
        if inline is None:
            inline = exact
        if not inline:
            services.run_enqueue_on_commit(run_id=replayed.pk)
    if inline:
        from agentops.runtime.loop import run_advance, worker_name

        run_advance(run_id=replayed.pk, worker=f"replay:{worker_name()}")
    replayed.refresh_from_db()
    return replayed


def replay_divergence(replayed_run: Run) -> dict | None:
    """Where an exact replay departed from its original, or None (same path, or not exact).

    {"step": N, "stage": "validation" | "policy" | "approval" | "tool" | "tool result" |
    "model" | "end", "tool": name, "tool_use_id": id, "expected": what the original did,
    "actual": what today's code decided}.
    """
    return replayed_run.divergence


# --- checks -------------------------------------------------------------------------


def _check_model(model: str) -> str:
    from django.conf import settings

    from agentops.runtime.pricing import model_price

    model = model.strip()
    if not model:
        raise ReplayError("The model name is empty.")
    if model.startswith("offline"):
        return model
    if not settings.ANTHROPIC_API_KEY:
        raise ReplayError(f"Model {model!r} needs ANTHROPIC_API_KEY; without it use 'offline'.")
    if model_price(model) is None:
        raise ReplayError(
            f"Unknown model {model!r}: it has no price in the admin's model table "
            "(Model routing and prices)."
        )
    return model


def _prompt_version(value) -> PromptVersion | None:
    if value is None or isinstance(value, PromptVersion):
        return value
    found = PromptVersion.objects.filter(name=str(value)).first()
    if found is None:
        names = ", ".join(PromptVersion.objects.values_list("name", flat=True)[:20]) or "none"
        raise ReplayError(f"No prompt version named {value!r} (there are: {names}).")
    return found


def _check_tool_results(given: dict | None, *, dry_run: bool) -> dict:
    """The given results, keys normalised to a tool name or a canonical call signature."""
    if not given:
        return {}
    if not isinstance(given, dict):
        raise ReplayError("tool_results must be a dict of {tool or signature: result}.")
    checked = {}
    for key, result in given.items():
        name, _, raw_args = str(key).partition(":")
        tool = TOOLS.get(name)
        if tool is None:
            raise ReplayError(f"tool_results names an unknown tool {name!r} (in {key!r}).")
        if tool.side_effect and not dry_run:
            raise ReplayError(
                f"{name} has side effects: its result can be given to a dry run only."
            )
        if not isinstance(result, dict):
            raise ReplayError(f"The result given for {key!r} must be a JSON object.")
        if raw_args:
            try:
                args = json.loads(raw_args)
            except ValueError:
                args = None
            if not isinstance(args, dict):
                example = signature(name, {"order_id": "ORD-10023"})
                raise ReplayError(
                    f"{key!r} is not a call signature: the tool's name, a colon and its "
                    f"arguments as a JSON object, e.g. {example!r}."
                )
            checked[signature(name, args)] = result
        else:
            checked[name] = result
    return checked


# --- forks ----------------------------------------------------------------------------


def _copy_prefix(*, original: Run, fork: Run, step: int) -> None:
    """Give the fork the original's conversation and spans before `step`."""
    assistants = [i for i, m in enumerate(original.messages) if m.get("role") == "assistant"]
    cut = assistants[step - 1]
    prefix = original.messages[:cut]
    Turn.objects.bulk_create(
        Turn(run=fork, seq=seq, message=message) for seq, message in enumerate(prefix)
    )
    Run.objects.filter(pk=fork.pk).update(
        tool_results=[],
        triage=original.triage,
        model_calls=step - 1,
        # A step is a model call or an answered tool call, as the loop counts them.
        step_count=(step - 1)
        + sum(
            1
            for m in prefix
            if m.get("role") == "user" and isinstance(m.get("content"), list)
            for b in m["content"]
            if isinstance(b, dict) and b.get("type") == "tool_result"
        ),
        reply="",
    )
    # The steps' spans, not the original's root: the fork's own is written when it ends.
    spans = list(
        original.spans.filter(step__lt=step)
        .exclude(kind=Span.Kind.RUN)
        .order_by("started_at", "id")
    )
    if not spans:
        return
    # Shifted to end at the fork's start, so one time axis shows the fork's whole trace.
    last = max(s.ended_at or s.started_at for s in spans)
    shift: timedelta = timezone.now() - last
    root_id = root_span_id(fork)
    copies = []
    for span in spans:
        copies.append(
            Span(
                run=fork,
                span_id=new_span_id(),
                parent_span_id=root_id,
                step=span.step,
                kind=span.kind,
                name=span.name,
                status=span.status,
                error_class=span.error_class,
                error_message=span.error_message,
                attempt=span.attempt,
                model=span.model,
                input=span.input,
                output=span.output,
                attributes={
                    **(span.attributes or {}),
                    "copied_from": span.span_id,
                    "replay_of": str(original.code),
                },
                # Tokens are shown; the cost stays with the original, which paid it.
                input_tokens=span.input_tokens,
                output_tokens=span.output_tokens,
                cost=0,
                started_at=span.started_at + shift,
                ended_at=None if span.ended_at is None else span.ended_at + shift,
            )
        )
    Span.objects.bulk_create(copies)
