"""Celery tasks of the approvals app: thin. Load, call one service, return."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.conf import settings

from approvals.models import PendingAction
from approvals.notifications import action_notify
from approvals.services import actions_expire


@shared_task(ignore_result=True)
def expire_pending_actions() -> None:
    actions_expire(older_than=timedelta(seconds=settings.APPROVAL_EXPIRE_AFTER_SECONDS))


@shared_task(
    ignore_result=True,
    autoretry_for=(Exception,),
    retry_backoff=5,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=8,
)
def notify_pending_action(action_id: int) -> None:
    # Email may have gone out before a webhook failure: a retry may send it again,
    # which is better for an approver than never hearing of the action.
    action = PendingAction.objects.select_related("run__ticket").filter(pk=action_id).first()
    if action is not None:
        action_notify(action=action)
