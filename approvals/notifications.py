"""Telling approvers that an action waits for them: email, and optionally a webhook."""

from __future__ import annotations

import json
import urllib.request

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db.models import Q
from django.urls import reverse

from agentops.money import money_format
from approvals.models import PendingAction

WEBHOOK_TIMEOUT_SECONDS = 10


def approver_emails() -> list[str]:
    """Active staff who may decide, directly, through a group, or as superusers."""
    User = get_user_model()
    users = User.objects.filter(is_active=True, is_staff=True).filter(
        Q(is_superuser=True)
        | Q(user_permissions__codename="decide_pendingaction")
        | Q(groups__permissions__codename="decide_pendingaction")
    )
    return sorted({u.email for u in users.distinct() if u.email})


def action_summary(action: PendingAction) -> tuple[str, str]:
    amount = (
        money_format(cents=action.amount_cents, currency=action.currency)
        if action.amount_cents
        else ""
    )
    order = action.args.get("order_id", "") if isinstance(action.args, dict) else ""
    customer = action.run.ticket.customer_email
    tripped = [
        r.get("detail", "") for r in action.rules if isinstance(r, dict) and r.get("tripped")
    ]
    url = settings.SITE_URL + reverse("approval_detail", args=[action.code])
    subject = f"Approval needed: {action.tool} {amount} for {customer}".strip()
    lines = [
        f"{action.tool} {amount} on {order or '-'} for {customer} waits for a decision.",
        "",
        "Rules tripped:",
        *[f"- {t}" for t in tripped],
        "",
        f"Decide: {url}",
    ]
    if action.approvals_required > 1:
        lines.insert(1, "Two different approvers must approve it.")
    return subject, "\n".join(lines)


def action_notify(*, action: PendingAction) -> None:
    """Raises on failure so the task retries; email first, then the webhook."""
    if action.status != PendingAction.Status.PENDING:
        return
    subject, body = action_summary(action)
    recipients = approver_emails()
    if recipients:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)
    if settings.APPROVALS_WEBHOOK_URL:
        payload = json.dumps({"text": f"*{subject}*\n{body}"}).encode()
        request = urllib.request.Request(  # noqa: S310 - an admin-configured https URL
            settings.APPROVALS_WEBHOOK_URL,
            data=payload,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as response:  # noqa: S310
            response.read()
