"""Celery tasks of the traces app: thin."""

from celery import shared_task

from traces.services import alerts_check


@shared_task(ignore_result=True)
def check_alerts() -> None:
    alerts_check()
