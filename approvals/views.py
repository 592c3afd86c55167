"""The approvals queue: see what the agent wants to do, approve or reject it."""

from __future__ import annotations

import json
from uuid import UUID

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
from approvals.forms import ApproveForm, RejectForm
from approvals.models import PendingAction
from approvals.services import (
    DECIDE_PERMISSION,
    ActionAlreadyDecided,
    action_approve,
    action_reject,
)

PAGE = "approvals/approval_list.html"
CHANGED_EVENT = "approvals-changed"


def _get_action(code: UUID) -> PendingAction:
    try:
        return _decorate(selectors.action_get(code=code))
    except PendingAction.DoesNotExist:
        raise Http404("No pending action with that code.") from None


def _decorate(action: PendingAction) -> PendingAction:
    """Attach what the card shows, so the template does no digging."""
    action.amount_text = money_format(cents=action.amount_cents, currency=action.currency)
    args = action.args if isinstance(action.args, dict) else {}
    action.order_id = args.get("order_id", "")
    action.args_text = json.dumps(action.args, indent=2, ensure_ascii=False, default=str)
    rules = action.rules if isinstance(action.rules, list) else []
    action.tripped_rules = [r for r in rules if isinstance(r, dict) and r.get("tripped")]
    action.passed_rules = [r for r in rules if isinstance(r, dict) and not r.get("tripped")]
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


def _list_context(request: HttpRequest) -> dict:
    return {
        "nav_section": "approvals",
        "pending": [_decorate(a) for a in selectors.action_list_pending()],
        "recent": [_decorate(a) for a in selectors.action_list_recent()],
        "can_decide": request.user.has_perm(DECIDE_PERMISSION),
    }


@require_safe
@staff_required
def approval_list(request: HttpRequest) -> HttpResponse:
    context = _list_context(request)
    if request.htmx:
        # The "recently decided" table refreshes itself when a decision is made.
        part = "recent" if request.htmx.target == "recent" else "queue"
        return render(request, f"{PAGE}#{part}", context)
    return render(request, PAGE, context)


@require_safe
@staff_required
def approval_count(request: HttpRequest) -> HttpResponse:
    """The navigation badge; `nav_pending_count` comes from the context processor."""
    return render(request, "base.html#pending_badge")


@require_POST
@staff_required
@permission_required(DECIDE_PERMISSION, raise_exception=True)
def approval_approve(request: HttpRequest, code: UUID) -> HttpResponse:
    action = _get_action(code)
    form = ApproveForm(request.POST)
    reason = form.cleaned_data["reason"] if form.is_valid() else ""
    return _decide(request, action, decide=action_approve, reason=reason)


@require_POST
@staff_required
@permission_required(DECIDE_PERMISSION, raise_exception=True)
def approval_reject(request: HttpRequest, code: UUID) -> HttpResponse:
    action = _get_action(code)
    form = RejectForm(request.POST)
    if not form.is_valid():
        return _refuse(request, action, " ".join(form.errors["reason"]))
    return _decide(request, action, decide=action_reject, reason=form.cleaned_data["reason"])


def _decide(request: HttpRequest, action: PendingAction, *, decide, reason: str) -> HttpResponse:
    try:
        action = _decorate(decide(action=action, actor=request.user, reason=reason))
    except ActionAlreadyDecided as exc:
        action = _decorate(exc.action)
        action.notice = _decided_text(action)
        status = 409
    except ValidationError as exc:
        return _refuse(request, action, " ".join(exc.messages))
    else:
        status = 200

    if request.htmx:
        response = render(
            request, f"{PAGE}#action", {"action": action, "can_decide": True}, status=status
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


def _refuse(request: HttpRequest, action: PendingAction, message: str) -> HttpResponse:
    """Nothing was decided: show the card again with the problem next to the field."""
    if request.htmx:
        action.reason_error = message
        return render(request, f"{PAGE}#action", {"action": action, "can_decide": True}, status=422)
    context = _list_context(request)
    for row in context["pending"]:
        if row.pk == action.pk:
            row.reason_error = message
    return render(request, PAGE, context, status=422)
