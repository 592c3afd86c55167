"""The finance pages: reconciliation of the ledger against the payment provider."""

from __future__ import annotations

from datetime import UTC, datetime, time

from django import forms
from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import render
from django.views.decorators.http import require_safe

from agentops.decorators import staff_required
from agentops.integrations.errors import ProviderError
from agentops.reconciliation import reconciliation_report

# Finance sees the ledger; the same permission opens its reconciliation.
RECONCILE_PERMISSION = "agentops.view_effect"


SECTIONS = [
    ("provider_only", "In the provider, not in the ledger"),
    ("ledger_only", "In the ledger, not at the provider"),
    ("duplicates", "Duplicates: more than one refund for a ticket and order"),
    ("matched", "Matched"),
]


class ReconcileForm(forms.Form):
    since = forms.DateField(required=False, input_formats=["%Y-%m-%d"])


@require_safe
@staff_required
@permission_required(RECONCILE_PERMISSION, raise_exception=True)
def reconciliation(request: HttpRequest) -> HttpResponse:
    form = ReconcileForm(request.GET)
    if not form.is_valid():
        return HttpResponseBadRequest(
            "Bad filter: since must be a date like 2026-01-31.", content_type="text/plain"
        )
    since_day = form.cleaned_data["since"]
    since = None
    if since_day:
        since = datetime.combine(since_day, time.min, tzinfo=UTC)
    error = ""
    report = None
    try:
        report = reconciliation_report(since=since)
    except ProviderError as exc:
        error = f"The payment provider could not be asked: {exc}"
    context = {
        "nav_section": "reconciliation",
        "report": report,
        "error": error,
        "since": since_day.isoformat() if since_day else "",
        "sections": [(name, title, getattr(report, name)) for name, title in SECTIONS]
        if report
        else [],
    }
    template = "agentops/reconciliation.html"
    if request.htmx:
        template += "#report"
    return render(request, template, context)
