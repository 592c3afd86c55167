"""The runs list and the run page (staff only)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from uuid import UUID

from django import forms
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, QueryDict
from django.shortcuts import render
from django.template.loader import render_to_string
from django.utils import timezone
from django.views.decorators.http import require_safe
from django_htmx.http import HttpResponseStopPolling

from agentops.decorators import staff_required
from agentops.models import Run
from agentops.money import money_format
from approvals.selectors import action_list_for_run
from traces import selectors
from traces.models import Span

# A payload longer than this is folded into a <details> so the timeline stays scannable.
PAYLOAD_FOLD_LINES = 14
PAYLOAD_FOLD_CHARS = 1200
CHIP_MAX_CHARS = 80


def duration_text(value: timedelta | float | None) -> str:
    """A duration as a person reads it: "350 ms", "2.4 s", "3 m 05 s", "2 h 03 m"."""
    if value is None:
        return "—"
    seconds = value.total_seconds() if isinstance(value, timedelta) else value / 1000
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} m {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} m"


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
            ("newest", "Newest first"),
            ("oldest", "Oldest first"),
            ("cost", "Most expensive"),
            ("duration", "Slowest"),
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


@dataclass(frozen=True)
class SpanRow:
    span: Span
    depth: int
    duration: str
    payloads: list[Payload]
    # Short flat attributes read better as "key value" chips than as a JSON block.
    chips: list[tuple[str, str]]


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


def _span_rows(spans: list[Span]) -> list[SpanRow]:
    depths: dict[str, int] = {}
    rows = []
    for span in spans:
        # Spans start after their parent, so the parent's depth is already known.
        depth = depths.get(span.parent_span_id, -1) + 1 if span.parent_span_id else 0
        depths[span.span_id] = depth
        chips = _chips(span.attributes)
        payloads = [
            _payload("Input", span.input),
            _payload("Output", span.output),
            None if chips is not None else _payload("Attributes", span.attributes),
        ]
        rows.append(
            SpanRow(
                span=span,
                depth=min(depth, 4),
                duration=duration_text(span.duration_ms),
                payloads=[p for p in payloads if p is not None],
                chips=chips or [],
            )
        )
    return rows


def _live_version(run: Run, spans: list[Span], effects: list, actions: list) -> str:
    return _fingerprint(
        # Conditional UPDATEs skip auto_now, so updated_at alone is not enough.
        (run.status, run.step_count, run.cost, run.reply, run.updated_at, run.finished_at),
        [(s.span_id, s.status, s.ended_at) for s in spans],
        [(e.pk, e.status, e.attempts) for e in effects],
        [(a.pk, a.status) for a in actions],
    )


def _run_context(run: Run) -> dict[str, Any]:
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
    return {
        "nav_section": "runs",
        "live_version": _live_version(run, spans, effects, actions),
        "run": run,
        "ticket": run.ticket,
        "duration": duration_text(run.duration),
        "span_rows": _span_rows(spans),
        "effects": effects,
        "actions": actions,
        "conversation": _payload("Conversation", run.messages),
    }


@require_safe
@staff_required
def run_detail(request: HttpRequest, code: UUID) -> HttpResponse:
    try:
        run = selectors.run_get(code=code)
    except Run.DoesNotExist:
        raise Http404("No run with that code.") from None
    context = _run_context(run)
    if not request.htmx:
        return render(request, "traces/run_detail.html", context)
    if run.is_final:
        fragment = render_to_string("traces/run_detail.html#steps", context, request=request)
        # 286 tells htmx to stop polling; the final fragment is still swapped in.
        return HttpResponseStopPolling(fragment)
    if request.GET.get("v") == context["live_version"]:
        return HttpResponse(status=204)  # nothing changed since the last poll
    return render(request, "traces/run_detail.html#steps", context)
