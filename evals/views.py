"""Replay a run, compare two runs, keep a run as a regression case, see evals and shadows."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST, require_safe
from django_htmx.http import HttpResponseStopPolling

from agentops.decorators import staff_required
from agentops.models import Run
from agentops.runtime.replaying import divergence_text
from evals import selectors, services
from evals.checks import call_text
from evals.compare import compare_runs
from evals.forms import RegressionCaseForm, ReplayForm
from evals.models import EvalRun, RegressionCase

COMPARE = "evals/compare.html"


def _get_run(code: UUID | str) -> Run:
    try:
        return Run.objects.select_related("ticket", "prompt_version", "replay_of").get(code=code)
    except (Run.DoesNotExist, ValidationError):
        raise Http404("No run with that code.") from None


def _pretty(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


@require_POST
@staff_required
@permission_required(services.REPLAY_PERMISSION, raise_exception=True)
def run_replay(request: HttpRequest, code: UUID) -> HttpResponse:
    """Start a replay, re-run or fork; land on the comparison with the original."""
    run = _get_run(code)
    back = reverse("run_detail", args=[run.code]) + "#replay"
    form = ReplayForm(request.POST)
    if not form.is_valid():
        errors = "; ".join(" ".join(e) for e in form.errors.values())
        messages.error(request, f"Replay not started: {errors}")
        return redirect(back)
    data = form.cleaned_data
    try:
        replay = services.run_replay_start(
            run=run,
            user=request.user,
            mode=data["mode"],
            from_step=data["from_step"],
            model=data["model"].strip(),
            prompt_version=data["prompt_version"],
            live=data["live"],
        )
    except services.ReplayRefused as refused:
        messages.error(request, f"Replay not started: {refused}")
        return redirect(back)
    return redirect("run_compare", code=replay.code)


# --- the comparison ------------------------------------------------------------------


def _side(run: Run) -> dict[str, Any]:
    return {
        "run": run,
        "prompt": run.prompt_version.name if run.prompt_version else "built-in",
    }


def _call_view(call, differing: set[str]) -> dict[str, Any] | None:
    if call is None:
        return None
    outcome = call.outcome
    args = call.args if isinstance(call.args, dict) else {"(whole value)": call.args}
    return {
        "tool": call.tool,
        "args": [
            (key, json.dumps(value, ensure_ascii=False, default=str), key in differing)
            for key, value in sorted(args.items())
        ],
        "answered": outcome is not None,
        "is_error": bool(outcome and outcome.is_error),
        "code": outcome.code if outcome else "",
        "result": _pretty(outcome.content) if outcome else "",
    }


@require_safe
@staff_required
def run_compare(request: HttpRequest, code: UUID) -> HttpResponse:
    """Original and replay (or any two runs, ?with=) side by side, step by step."""
    run = _get_run(code)
    other_code = request.GET.get("with", "").strip()
    if other_code:
        left, right = run, _get_run(other_code)
    elif run.replay_of is not None:
        left, right = run.replay_of, run
    else:
        replays = selectors.run_replays_list(run=run)
        left, right = run, (replays[0] if replays else None)
    context: dict[str, Any] = {"nav_section": "runs", "run": run, "left": _side(left)}
    if right is None:
        context["nothing"] = True
        return render(request, COMPARE, context)
    comparison = compare_runs(left, right)
    rows = [
        {
            "number": row.number,
            "divergence": row.divergence,
            "differs": row.differs,
            "text_differs": row.text_differs,
            "left_text": row.left.text if row.left else None,
            "right_text": row.right.text if row.right else None,
            "left_missing": row.left is None,
            "right_missing": row.right is None,
            "calls": [
                {
                    "kinds": pair.kinds,
                    "arg_keys": pair.arg_keys,
                    "text_keys": pair.text_keys,
                    "outcome_note": pair.outcome_note,
                    "left": _call_view(pair.left, {*pair.arg_keys, *pair.text_keys}),
                    "right": _call_view(pair.right, {*pair.arg_keys, *pair.text_keys}),
                }
                for pair in row.calls
            ],
        }
        for row in comparison.rows
    ]
    both_final = left.is_final and right.is_final
    # An exact replay also carries the engine's own finding: where today's code decided
    # otherwise than the recording (validation, policy, approval...), which the
    # conversation alone may not show.
    divergence = right.divergence if right.replay_of_id == left.pk else None
    context.update(
        engine_divergence=divergence_text(divergence) if divergence else "",
        right=_side(right),
        comparison=comparison,
        rows=rows,
        both_final=both_final,
        replays=selectors.run_replays_list(run=left),
        poll_url=request.get_full_path(),
    )
    if request.htmx:
        if both_final:
            fragment = render_to_string(f"{COMPARE}#comparison", context, request=request)
            return HttpResponseStopPolling(fragment)
        return render(request, f"{COMPARE}#comparison", context)
    return render(request, COMPARE, context)


# --- the regression set --------------------------------------------------------------


@require_http_methods(["GET", "HEAD", "POST"])
@staff_required
@permission_required("evals.add_regressioncase", raise_exception=True)
def case_new(request: HttpRequest, code: UUID) -> HttpResponse:
    """Keep a run as a regression case: its expectations prefilled from what it did."""
    run = _get_run(code)
    if request.method == "POST":
        form = RegressionCaseForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            case = services.case_create(
                run=run,
                user=request.user,
                name=data["name"],
                expected_tool_calls=data["expected_tool_calls"],
                forbidden_tools=data["forbidden_tools"],
                expected_status=data["expected_status"],
                notes=data["notes"],
                recorded=data["recorded_tool_results"],
            )
            messages.success(request, f"Added “{case.name}” to the regression set.")
            return redirect("evals")
    else:
        form = RegressionCaseForm(initial=services.case_defaults_from_run(run=run))
    context = {
        "nav_section": "evals",
        "form": form,
        "run": run,
    }
    return render(request, "evals/case_form.html", context)


@require_http_methods(["GET", "HEAD", "POST"])
@staff_required
@permission_required("evals.change_regressioncase", raise_exception=True)
def case_edit(request: HttpRequest, code: UUID) -> HttpResponse:
    try:
        case = RegressionCase.objects.select_related("source_run").get(code=code)
    except RegressionCase.DoesNotExist:
        raise Http404("No regression case with that code.") from None
    form = RegressionCaseForm(request.POST or None, instance=case)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, f"Saved “{case.name}”.")
        return redirect("evals")
    context = {
        "nav_section": "evals",
        "form": form,
        "case": case,
        "run": case.source_run,
    }
    return render(request, "evals/case_form.html", context)


@require_safe
@staff_required
def eval_list(request: HttpRequest) -> HttpResponse:
    context = {
        "nav_section": "evals",
        "eval_runs": selectors.eval_runs_list(),
        "cases": RegressionCase.objects.select_related("source_run").order_by("-active", "name"),
        "can_change_case": request.user.has_perm("evals.change_regressioncase"),
    }
    return render(request, "evals/eval_list.html", context)


@require_safe
@staff_required
def eval_detail(request: HttpRequest, code: UUID) -> HttpResponse:
    try:
        eval_run = EvalRun.objects.select_related("prompt_version").get(code=code)
    except EvalRun.DoesNotExist:
        raise Http404("No eval run with that code.") from None
    results = list(eval_run.results.select_related("case__source_run", "run"))
    for result in results:
        result.expected_text = _expected_text(result.case)
        result.got_text = _got_text(result.got)
    context = {"nav_section": "evals", "eval_run": eval_run, "results": results}
    return render(request, "evals/eval_detail.html", context)


def _expected_text(case: RegressionCase) -> list[str]:
    lines = [call_text(c) for c in case.expected_tool_calls]
    lines += [f"no {tool}" for tool in case.forbidden_tools]
    if case.expected_status:
        lines.append(f"ends {case.expected_status}")
    return lines


def _got_text(got: dict) -> list[str]:
    if not got:
        return []
    lines = [call_text(c) for c in got.get("tool_calls", [])]
    if got.get("status"):
        lines.append(f"ends {got['status']}")
    return lines


@require_safe
@staff_required
def shadow_summary(request: HttpRequest) -> HttpResponse:
    from evals.models import ShadowSetting

    try:
        limit = min(int(request.GET.get("limit", 500)), 5000)
    except ValueError:
        return HttpResponseBadRequest("limit: a whole number", content_type="text/plain")
    context = {
        "nav_section": "evals",
        "setting": ShadowSetting.objects.select_related("prompt_version").filter(pk=1).first(),
        "summary": selectors.shadow_summary(limit=max(limit, 1)),
    }
    return render(request, "evals/shadow.html", context)
