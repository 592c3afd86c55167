"""The approvals queue: see what the agent wants to do, approve or reject it."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from uuid import UUID

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.formats import date_format
from django.views.decorators.http import require_POST, require_safe
from django_htmx.http import trigger_client_event

from agentops.decorators import staff_required
from agentops.money import money_format
from approvals import selectors
from approvals.forms import ApproveForm, HistoryForm, QueueFilterForm, RejectForm
from approvals.models import PendingAction
from approvals.services import (
    DECIDE_PERMISSION,
    ActionAlreadyDecided,
    OverApprovalLimit,
    action_approve,
    action_reject,
    approver_limit,
)

PAGE = "approvals/approval_list.html"
DETAIL = "approvals/approval_detail.html"
HISTORY = "approvals/approval_history.html"
CHANGED_EVENT = "approvals-changed"


def _get_action(request: HttpRequest, code: UUID) -> PendingAction:
    try:
        return _decorate(selectors.action_get(code=code), request.user)
    except PendingAction.DoesNotExist:
        raise Http404("No pending action with that code.") from None


def _sla(action: PendingAction) -> str:
    if action.status != PendingAction.Status.PENDING:
        return ""
    age = (timezone.now() - action.created_at).total_seconds()
    if age >= settings.APPROVAL_SLA_SECONDS:
        return "red"
    if age >= settings.APPROVAL_SLA_SECONDS / 2:
        return "amber"
    return "green"


def _decorate(action: PendingAction, user) -> PendingAction:
    """Attach what the card shows, so the template does no digging."""
    action.amount_text = money_format(cents=action.amount_cents, currency=action.currency)
    args = action.args if isinstance(action.args, dict) else {}
    action.order_id = args.get("order_id", "")
    action.args_text = json.dumps(action.args, indent=2, ensure_ascii=False, default=str)
    rules = action.rules if isinstance(action.rules, list) else []
    action.tripped_rules = [r for r in rules if isinstance(r, dict) and r.get("tripped")]
    action.passed_rules = [r for r in rules if isinstance(r, dict) and not r.get("tripped")]
    action.sla = _sla(action)
    action.can_decide = user.has_perm(DECIDE_PERMISSION)
    limit = approver_limit(user=user, currency=action.currency) if action.can_decide else None
    action.limit_text = money_format(cents=limit, currency=action.currency)
    action.within_limit = action.amount_cents is None or (
        limit is not None and action.amount_cents <= limit
    )
    action.already_first = action.first_approved_by_id == user.pk
    return action


def _decided_text(action: PendingAction) -> str:
    user = action.decided_by
    who = (user.get_full_name() or user.get_username()) if user else "the system"
    when = (
        date_format(timezone.localtime(action.decided_at), "M j, Y H:i")
        if action.decided_at
        else "an unknown time"
    )
    return f"Already {action.get_status_display().lower()} by {who} at {when}."


def _filters(request: HttpRequest) -> tuple[QueueFilterForm, selectors.QueueFilters]:
    form = QueueFilterForm(request.GET)
    if not form.is_valid():
        return form, selectors.QueueFilters()
    data = form.cleaned_data

    def cents(value: Decimal | None) -> int | None:
        return None if value is None else int(value * 100)

    return form, selectors.QueueFilters(
        tool=data["tool"] or "",
        currency=data["currency"] or "",
        min_cents=cents(data["min_amount"]),
        max_cents=cents(data["max_amount"]),
        older_than_minutes=data["older_than"],
    )


AGE_CHOICES = [(15, "15 minutes"), (60, "1 hour"), (240, "4 hours"), (1440, "1 day")]


def _signature(pending: list[PendingAction]) -> str:
    """Changes whenever what the queue shows changes (not as time passes)."""
    raw = ";".join(f"{a.pk}:{a.status}:{a.first_approved_by_id or ''}" for a in pending)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _list_context(request: HttpRequest) -> dict:
    form, filters = _filters(request)
    pending = selectors.action_list_pending(filters=filters)
    query = request.GET.copy()
    query.pop("signature", None)
    return {
        "nav_section": "approvals",
        "signature": _signature(pending),
        "age_choices": AGE_CHOICES,
        "sla_minutes": settings.APPROVAL_SLA_SECONDS // 60,
        "pending": [_decorate(a, request.user) for a in pending],
        "recent": [_decorate(a, request.user) for a in selectors.action_list_recent()],
        "filter_form": form,
        "filters": filters,
        "choices": selectors.action_queue_choices(),
        "reject_reasons": selectors.reject_reasons(),
        "query": query.urlencode(),
    }


@require_safe
@staff_required
def approval_list(request: HttpRequest) -> HttpResponse:
    context = _list_context(request)
    if request.htmx:
        if request.GET.get("signature") == context["signature"]:
            # A poll and nothing changed: 204 keeps the page (and what is typed) as it is.
            return HttpResponse(status=204)
        # The "recently decided" table refreshes itself when a decision is made.
        part = "recent" if request.htmx.target == "recent" else "queue"
        return render(request, f"{PAGE}#{part}", context)
    return render(request, PAGE, context)


@require_safe
@staff_required
def approval_count(request: HttpRequest) -> HttpResponse:
    """The navigation badge; `nav_pending_count` comes from the context processor."""
    return render(request, "base.html#pending_badge")


@require_safe
@staff_required
def approval_detail(request: HttpRequest, code: UUID) -> HttpResponse:
    action = _get_action(request, code)
    context = selectors.action_context(action=action)
    return render(
        request,
        DETAIL,
        {
            "nav_section": "approvals",
            "action": action,
            "order": context.order,
            "order_refunds": [
                dict(r=r, text=money_format(cents=r.amount_cents, currency=action.currency))
                for r in (context.order.refunds if context.order else ())
            ],
            "previous_refunds": [
                dict(r=r, text=money_format(cents=r.amount_cents, currency=action.currency))
                for r in context.previous_refunds
            ],
            "order_total": money_format(
                cents=context.order.total_cents, currency=context.order.currency
            )
            if context.order
            else "",
            "decisions": selectors.action_decisions(action=action),
            "effects": selectors.action_effects(action=action),
            "reject_reasons": selectors.reject_reasons(),
        },
    )


@require_safe
@staff_required
def approval_history(request: HttpRequest) -> HttpResponse:
    form = HistoryForm(request.GET)
    data = form.cleaned_data if form.is_valid() else {"q": "", "status": ""}
    rows = [
        _decorate(a, request.user)
        for a in selectors.action_list_decided(query=data["q"], status=data["status"])
    ]
    context = {"nav_section": "approvals", "form": form, "rows": rows}
    if request.htmx:
        return render(request, f"{HISTORY}#results", context)
    return render(request, HISTORY, context)


@require_POST
@staff_required
@permission_required(DECIDE_PERMISSION, raise_exception=True)
def approval_approve(request: HttpRequest, code: UUID) -> HttpResponse:
    action = _get_action(request, code)
    form = ApproveForm(request.POST)
    reason = form.cleaned_data["reason"] if form.is_valid() else ""
    return _decide(request, action, decide=action_approve, reason=reason)


@require_POST
@staff_required
@permission_required(DECIDE_PERMISSION, raise_exception=True)
def approval_reject(request: HttpRequest, code: UUID) -> HttpResponse:
    action = _get_action(request, code)
    form = RejectForm(request.POST)
    if not form.is_valid():
        return _refuse(request, action, form.errors)
    return _decide(
        request,
        action,
        decide=action_reject,
        reason=form.cleaned_data["reason"],
        reason_code=form.cleaned_data["reason_code"],
    )


def _decide(request: HttpRequest, action: PendingAction, *, decide, **kwargs) -> HttpResponse:
    try:
        action = _decorate(decide(action=action, actor=request.user, **kwargs), request.user)
    except OverApprovalLimit:
        raise
    except ActionAlreadyDecided as exc:
        action = _decorate(exc.action, request.user)
        action.notice = (
            _decided_text(action) if action.status != PendingAction.Status.PENDING else str(exc)
        )
        status = 409
    except ValidationError as exc:
        return _refuse(request, action, {"reason": exc.messages})
    else:
        status = 200
        if action.status == PendingAction.Status.PENDING:
            action.notice = "Your approval is recorded; a second approver must approve too."

    if request.htmx:
        response = render(
            request,
            f"{PAGE}#action",
            {"action": action, "reject_reasons": selectors.reject_reasons()},
            status=status,
        )
        return trigger_client_event(response, CHANGED_EVENT)

    if status == 409:
        messages.warning(request, action.notice)
    else:
        messages.success(
            request,
            f"{action.get_status_display()}: {action.tool} {action.amount_text}"
            f" for {action.run.ticket.customer_email}.",
        )
    return redirect("approvals")


def _refuse(request: HttpRequest, action: PendingAction, errors) -> HttpResponse:
    """Nothing was decided: show the card again with the problem next to the field."""
    action.reason_error = " ".join(errors.get("reason", []))
    action.code_error = " ".join(errors.get("reason_code", []))
    action.reason_value = request.POST.get("reason", "")
    action.code_value = request.POST.get("reason_code", "")
    if request.htmx:
        return render(
            request,
            f"{PAGE}#action",
            {"action": action, "reject_reasons": selectors.reject_reasons()},
            status=422,
        )
    context = _list_context(request)
    context["pending"] = [action if row.pk == action.pk else row for row in context["pending"]]
    return render(request, PAGE, context, status=422)
