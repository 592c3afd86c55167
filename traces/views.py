"""The runs list and the run page (staff only)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from uuid import UUID

from django import forms
from django.core.cache import cache
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    JsonResponse,
    QueryDict,
)
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_safe
from django_htmx.http import HttpResponseStopPolling

from agentops.decorators import staff_required
from agentops.models import Run
from agentops.money import money_format
from approvals.selectors import action_list_for_run
from evals.selectors import outcomes_by_prompt_version, replay_panel_get
from traces import selectors
from traces.charts import stacked_bars
from traces.dashboard import CACHE_SECONDS, dashboard_get
from traces.display import duration_text, span_as_dict, span_part, span_parts, waterfall
from traces.models import Span
from traces.otel import run_otel_attributes, span_otel_name

# A payload longer than this is folded into a <details> so the page stays scannable.
PAYLOAD_FOLD_LINES = 14
PAYLOAD_FOLD_CHARS = 1200
CHIP_MAX_CHARS = 80
SPAN_PARTS = ("input", "output", "attributes")


def _fingerprint(*state: Any) -> str:
    """A short digest of what a polled fragment shows.

    The fragment carries it in its poll URL; a poll that brings back the same
    digest gets 204 and htmx swaps nothing, so focus, scroll and any <details>
    someone opened stay as they were.
    """
    return hashlib.sha256(repr(state).encode()).hexdigest()[:16]


# --- Runs list (trace search) ----------------------------------------------


class RunFilterForm(forms.Form):
    status = forms.ChoiceField(choices=[("", "All"), *Run.Status.choices], required=False)
    error_class = forms.ChoiceField(
        label="Error class",
        choices=[("", "Any"), *[c for c in Span.ErrorClass.choices if c[0]]],
        required=False,
    )
    tool = forms.CharField(max_length=100, required=False)
    model = forms.CharField(max_length=100, required=False)
    origin = forms.ChoiceField(
        label="Runs",
        choices=[
            ("", "All"),
            ("production", "Production"),
            ("replays", "Replays, evals, shadow"),
        ],
        required=False,
    )
    since = forms.DateField(label="From", required=False)
    until = forms.DateField(label="To", required=False, help_text="inclusive")
    q = forms.CharField(
        label="Customer or ticket",
        max_length=300,
        required=False,
        help_text="customer email, run or ticket code, trace id, or external ticket id",
    )
    min_duration = forms.FloatField(label="Duration ≥ (s)", min_value=0, required=False)
    min_cost = forms.DecimalField(
        label="Cost ≥ ($)", min_value=0, max_digits=12, decimal_places=6, required=False
    )
    sort = forms.ChoiceField(
        choices=[
            ("", "Newest first"),
            ("oldest", "Oldest first"),
            # Both over finished runs (see traces.selectors.SORTS).
            ("cost", "Most expensive, finished"),
            ("duration", "Slowest, finished"),
        ],
        required=False,
    )
    after = forms.UUIDField(required=False)
    before = forms.UUIDField(required=False)

    def clean(self):
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until and until < since:
            raise forms.ValidationError("the end date is before the start date")
        return data

    def filters(self) -> selectors.RunFilters:
        data = self.cleaned_data
        return selectors.RunFilters(
            status=data["status"],
            error_class=data["error_class"],
            tool=data["tool"].strip(),
            model=data["model"].strip(),
            origin=data["origin"],
            since=_day_start(data["since"]),
            until=_day_start(data["until"] + timedelta(days=1)) if data["until"] else None,
            q=data["q"].strip(),
            min_duration=(
                timedelta(seconds=data["min_duration"]) if data["min_duration"] else None
            ),
            min_cost=data["min_cost"] or None,
            sort=data["sort"] or "newest",
        )

    def params(self) -> dict[str, str]:
        """The filters as they were typed, for links that keep them (no cursor)."""
        return {
            name: str(self.data.get(name, "")).strip()
            for name in self.fields
            if name not in ("after", "before") and str(self.data.get(name, "")).strip()
        }


def _day_start(day: date | None) -> datetime | None:
    if day is None:
        return None
    return timezone.make_aware(datetime.combine(day, time.min))


def _query(**params: str) -> str:
    query = QueryDict(mutable=True)
    query.update({key: value for key, value in params.items() if value})
    return query.urlencode()


def _form_errors(form: forms.Form) -> str:
    return "; ".join(
        f"{'filters' if field == '__all__' else field}: {' '.join(msgs)}"
        for field, msgs in form.errors.items()
    )


@require_safe
@staff_required
def run_list(request: HttpRequest) -> HttpResponse:
    form = RunFilterForm(request.GET)
    if not form.is_valid():
        message = f"Bad filter: {_form_errors(form)}"
        return HttpResponseBadRequest(message, content_type="text/plain")
    filters = form.filters()
    params = form.params()
    try:
        page = selectors.run_list_page(
            filters=filters, after=form.cleaned_data["after"], before=form.cleaned_data["before"]
        )
    except Run.DoesNotExist:
        raise Http404("No run to page from: the link is out of date.") from None

    cursor = {
        **params,
        "after": str(form.cleaned_data["after"] or ""),
        "before": str(form.cleaned_data["before"] or ""),
    }
    version = _fingerprint(
        cursor,
        page.has_previous,
        page.has_next,
        [
            (r.code, r.status, r.step_count, r.cost, r.started_at, r.finished_at, r.updated_at)
            for r in page.runs
        ],
    )
    if request.htmx and request.GET.get("v") == version:
        return HttpResponse(status=204)  # the poll found nothing new: keep the table as it is

    error_classes = selectors.run_error_classes(runs=page.runs)
    for run in page.runs:
        run.duration_text = duration_text(run.duration)
        run.error_classes = error_classes.get(run.pk, [])
    without_status = {k: v for k, v in params.items() if k != "status"}
    status = filters.status
    context = {
        "nav_section": "runs",
        "form": form,
        "choices": selectors.run_filter_choices(),
        "poll_query": _query(**cursor, v=version),
        "page": page,
        "status": status,
        "status_label": dict(Run.Status.choices).get(status, ""),
        "status_filters": [
            (value, label, _query(status=value, **without_status))
            for value, label in [("", "All"), *Run.Status.choices]
        ],
        "filtered": bool(set(params) - {"sort"}),
        "next_query": _query(**params, after=str(page.runs[-1].code)) if page.runs else "",
        "previous_query": _query(**params, before=str(page.runs[0].code)) if page.runs else "",
    }
    template = "traces/run_list.html#table" if request.htmx else "traces/run_list.html"
    return render(request, template, context)


# --- Run page ---------------------------------------------------------------


@dataclass(frozen=True)
class Payload:
    label: str
    text: str
    folded: bool
    lines: int


def _payload(label: str, value: Any) -> Payload | None:
    if value in (None, "", {}, []):
        return None
    if isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    lines = text.count("\n") + 1
    folded = lines > PAYLOAD_FOLD_LINES or len(text) > PAYLOAD_FOLD_CHARS
    return Payload(label=label, text=text, folded=folded, lines=lines)


def _chips(attributes: Any) -> list[tuple[str, str]] | None:
    """Attributes as (key, value) pairs when all are short scalars, else None."""
    if not isinstance(attributes, dict):
        return None
    chips = []
    for key, value in attributes.items():
        if isinstance(value, (dict, list)):
            return None
        text = json.dumps(value) if value is None or isinstance(value, bool) else str(value)
        if len(text) > CHIP_MAX_CHARS:
            return None
        chips.append((str(key), text))
    return chips


def _live_version(run: Run, spans: list[Span], effects: list, actions: list) -> str:
    return _fingerprint(
        # Conditional UPDATEs skip auto_now, so updated_at alone is not enough.
        (run.status, run.step_count, run.cost, run.reply, run.updated_at, run.finished_at),
        [(s.span_id, s.status, s.ended_at) for s in spans],
        [(e.pk, e.status, e.attempts) for e in effects],
        [(a.pk, a.status) for a in actions],
    )


def _span_detail_context(run: Run, span: Span) -> dict[str, Any]:
    attributes = span.attributes if isinstance(span.attributes, dict) else {}
    chips = _chips(attributes)
    parts = [p for p in span_parts(span) if not (p.name == "attributes" and chips is not None)]
    effect = None
    if span.kind == Span.Kind.TOOL and attributes.get("idempotency_key"):
        effect = selectors.effect_for_key(run=run, key=str(attributes["idempotency_key"]))
        if effect is not None:
            effect.payloads = [
                p
                for p in (_payload("Result", effect.result), _payload("Error", effect.error))
                if p is not None
            ]
    return {
        "run": run,
        "span": span,
        "parts": parts,
        "chips": chips or [],
        "attempts": selectors.span_attempt_count(span=span),
        "duration": duration_text(span.duration_ms) if span.ended_at else "running…",
        "effect": effect,
    }


def _run_context(run: Run, open_span_id: str = "") -> dict[str, Any]:
    actions = action_list_for_run(run=run)
    for action in actions:
        action.amount_text = money_format(cents=action.amount_cents, currency=action.currency)
    effects = selectors.run_effects_list(run=run)
    for effect in effects:
        payloads = [
            _payload("Request", effect.request),
            _payload("Result", effect.result),
            _payload("Error", effect.error),
        ]
        effect.payloads = [p for p in payloads if p is not None]
    spans = selectors.run_spans_list(run=run)
    rows, ticks = waterfall(spans, now=timezone.now())
    open_span = next((s for s in spans if s.span_id == open_span_id), None)
    return {
        "nav_section": "runs",
        "live_version": _live_version(run, spans, effects, actions),
        "run": run,
        "ticket": run.ticket,
        "duration": duration_text(run.duration),
        "rows": rows,
        "span_count": len(spans),
        "ticks": ticks,
        "open_span_id": open_span.span_id if open_span else "",
        "open_detail": _span_detail_context(run, open_span) if open_span else None,
        "effects": effects,
        "actions": actions,
        "conversation": _payload("Conversation", run.messages),
    }


def _get_run(code: UUID) -> Run:
    try:
        return selectors.run_get(code=code)
    except Run.DoesNotExist:
        raise Http404("No run with that code.") from None


def _get_span(run: Run, span_id: str) -> Span:
    try:
        return selectors.span_get(run=run, span_id=span_id)
    except Span.DoesNotExist:
        raise Http404("No span with that id in this run.") from None


@require_safe
@staff_required
def run_detail(request: HttpRequest, code: UUID) -> HttpResponse:
    run = _get_run(code)
    context = _run_context(run, open_span_id=request.GET.get("span", ""))
    if not request.htmx:
        context["replay"] = replay_panel_get(run=run, user=request.user)
        return render(request, "traces/run_detail.html", context)
    if run.is_final:
        fragment = render_to_string("traces/run_detail.html#steps", context, request=request)
        # 286 tells htmx to stop polling; the final fragment is still swapped in.
        return HttpResponseStopPolling(fragment)
    if request.GET.get("v") == context["live_version"]:
        return HttpResponse(status=204)  # nothing changed since the last poll
    return render(request, "traces/run_detail.html#steps", context)


@require_safe
@staff_required
def span_detail(request: HttpRequest, code: UUID, span_id: str) -> HttpResponse:
    """One span's detail, opened in place under its bar (the page itself without htmx)."""
    run = _get_run(code)
    span = _get_span(run, span_id)
    if not request.htmx:
        url = reverse("run_detail", args=[run.code])
        return redirect(f"{url}?{_query(span=span.span_id)}#span-{span.span_id}")
    context = {"detail": _span_detail_context(run, span)}
    return render(request, "traces/run_detail.html#span_detail", context)


@require_safe
@staff_required
def span_part_view(request: HttpRequest, code: UUID, span_id: str, part: str) -> HttpResponse:
    """A large payload of a span, loaded when someone opens it; JSON without htmx."""
    if part not in SPAN_PARTS:
        raise Http404("No such part of a span.")
    span = _get_span(_get_run(code), span_id)
    found = span_part(span, part)
    if found is None:
        raise Http404("That part of the span is empty.")
    if not request.htmx:
        return JsonResponse(
            found.value, safe=False, json_dumps_params={"indent": 2, "ensure_ascii": False}
        )
    return render(request, "traces/run_detail.html#part_body", {"part": found})


@require_safe
@staff_required
def span_json(request: HttpRequest, code: UUID, span_id: str) -> HttpResponse:
    """A span as JSON, for the copy button and for pasting into an issue."""
    span = _get_span(_get_run(code), span_id)
    return JsonResponse(span_as_dict(span), json_dumps_params={"indent": 2, "ensure_ascii": False})


@require_safe
@staff_required
def run_trace_json(request: HttpRequest, code: UUID) -> HttpResponse:
    """The whole trace as a JSON file: the run, its spans and its ledger rows."""
    run = _get_run(code)
    spans = selectors.run_spans_list(run=run)
    otel = run_otel_attributes(spans)  # what an OTLP export would send, GenAI conventions
    body = {
        "run": {
            "code": str(run.code),
            "trace_id": run.trace_id,
            "status": run.status,
            "model": run.model,
            "outcome_reason": run.outcome_reason,
            "ticket": {
                "code": str(run.ticket.code),
                "external_id": run.ticket.external_id,
                "customer_email": run.ticket.customer_email,
                "subject": run.ticket.subject,
            },
            "step_count": run.step_count,
            "input_tokens": run.input_tokens,
            "output_tokens": run.output_tokens,
            "cost": str(run.cost),
            "created_at": run.created_at.isoformat(),
            "started_at": run.started_at.isoformat() if run.started_at else None,
            "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        },
        "spans": [
            {**span_as_dict(s), "otel": {"name": span_otel_name(s), "attributes": otel[s.span_id]}}
            for s in spans
        ],
        "effects": [
            {
                "idempotency_key": e.idempotency_key,
                "tool": e.tool,
                "status": e.status,
                "attempts": e.attempts,
                "request": e.request,
                "result": e.result,
                "error": e.error,
                "provider_ref": e.provider_ref,
                "created_at": e.created_at.isoformat(),
                "completed_at": e.completed_at.isoformat() if e.completed_at else None,
            }
            for e in selectors.run_effects_list(run=run)
        ],
    }
    response = JsonResponse(body, json_dumps_params={"indent": 2, "ensure_ascii": False})
    filename = f"trace-{run.trace_id or run.code}.json"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


# --- Dashboard ----------------------------------------------------------------

DASHBOARD_PRESETS = [
    (1, "24 hours"),
    (7, "7 days"),
    (30, "30 days"),
    (90, "90 days"),
    (365, "a year"),
]


class DashboardRangeForm(forms.Form):
    days = forms.IntegerField(min_value=1, max_value=3660, required=False)
    since = forms.DateField(label="From", required=False)
    until = forms.DateField(label="To", required=False, help_text="inclusive")

    def clean(self):
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until and until < since:
            raise forms.ValidationError("the end date is before the start date")
        if since and until and (until - since).days > 3660:
            raise forms.ValidationError("the range is longer than ten years")
        return data

    def range(self) -> tuple[datetime, datetime]:
        data = self.cleaned_data
        now = timezone.now()
        if data["since"] or data["until"]:
            until = _day_start(data["until"] + timedelta(days=1)) if data["until"] else now
            since = _day_start(data["since"]) if data["since"] else until - timedelta(days=30)
            return since, until
        return now - timedelta(days=data["days"] or 30), now


def _ago(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return duration_text(timezone.now() - moment)


@require_safe
@staff_required
def dashboard(request: HttpRequest) -> HttpResponse:
    form = DashboardRangeForm(request.GET)
    if not form.is_valid():
        message = f"Bad range: {_form_errors(form)}"
        return HttpResponseBadRequest(message, content_type="text/plain")
    since, until = form.range()
    # Whole minutes, so the cache (a minute per range) is shared between page loads.
    since, until = since.replace(second=0, microsecond=0), until.replace(second=0, microsecond=0)
    data = dashboard_get(since=since, until=until)
    by_prompt = cache.get_or_set(
        f"evals:by_prompt:{since.isoformat()}:{until.isoformat()}",
        lambda: outcomes_by_prompt_version(since=since, until=until),
        CACHE_SECONDS,
    )
    largest = max((count for _, _, count in data.outcomes), default=0) or 1
    context = {
        "nav_section": "dashboard",
        "form": form,
        "data": data,
        "by_prompt": by_prompt,
        "days_param": form.cleaned_data["days"]
        or (None if form.cleaned_data["since"] or form.cleaned_data["until"] else 30),
        "presets": DASHBOARD_PRESETS,
        "outcomes": [
            (status, label, count, round(count / largest * 100, 1))
            for status, label, count in data.outcomes
        ],
        "oldest_pending_age": _ago(data.oldest_pending_at),
        "latencies": [
            (
                row.label,
                row.count,
                duration_text(row.p50 * 1000) if row.p50 is not None else "—",
                duration_text(row.p99 * 1000) if row.p99 is not None else "—",
            )
            for row in data.latencies
        ],
        "errors_chart": stacked_bars("Errors per day, by class", data.days, data.errors_by_day),
        "spend_chart": stacked_bars(
            "Spend per day, by model", data.days, data.spend_by_day, unit="$"
        ),
    }
    return render(request, "traces/dashboard.html", context)
