"""Celery tasks: thin. Load, call the runtime, return."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from agentops.models import Run
from agentops.runtime.loop import WAITING, run_advance
from agentops.runtime.readonce import read_once
from agentops.runtime.sweeper import runs_sweep_stale
from evals.services import shadow_after_production


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    soft_time_limit=settings.RUN_TASK_SOFT_TIME_LIMIT,
    time_limit=settings.RUN_TASK_TIME_LIMIT,
    max_retries=None,
)
def advance_run(self, run_id: int) -> None:
    # One task: the run and its shadow share one read of the config token (readonce).
    with read_once():
        # A duplicate delivery finds the run claimed or finished and does nothing.
        try:
            status = run_advance(run_id=run_id)
        except (OperationalError, InterfaceError) as exc:
            # The database went away mid-run. Nothing is lost: every completed step is
            # committed, and the lease this worker may still hold ends on its own. Come
            # back when it has (the broken connection is replaced: CONN_HEALTH_CHECKS).
            if self.request.is_eager:
                raise
            raise self.retry(exc=exc, countdown=settings.RUN_LEASE_SECONDS + 1) from exc
        if status == WAITING and not self.request.is_eager:
            # Parked by an open circuit breaker or a spent retry budget: the run's lease
            # ends at its retry time. Come back then, on the same queue (Celery's retry).
            # Eager mode (debugging) cannot wait: the sweeper takes the run after its lease.
            retry_at = Run.objects.filter(pk=run_id).values_list("lease_expires_at", flat=True)[0]
            wait = (retry_at - timezone.now()).total_seconds() if retry_at else 0.0
            # A little past it: the run can be taken once its lease is strictly over.
            raise self.retry(countdown=max(wait, 0.0) + 0.05)
        if status in Run.FINAL_STATUSES:
            shadow_after_production(run_id=run_id)  # shadow mode; never raises


@shared_task(ignore_result=True)
def sweep_stale_runs() -> None:
    runs_sweep_stale()
