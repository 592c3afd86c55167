"""Celery tasks: thin. Load, call the runtime, return."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from agentops.models import Run
from agentops.runtime.loop import run_advance
from agentops.runtime.sweeper import runs_sweep_stale
from evals.services import shadow_after_production


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    soft_time_limit=settings.RUN_TASK_SOFT_TIME_LIMIT,
    time_limit=settings.RUN_TASK_TIME_LIMIT,
)
def advance_run(run_id: int) -> None:
    # A duplicate delivery finds the run claimed or finished and does nothing.
    if run_advance(run_id=run_id) in Run.FINAL_STATUSES:
        shadow_after_production(run_id=run_id)  # shadow mode; never raises


@shared_task(ignore_result=True)
def sweep_stale_runs() -> None:
    runs_sweep_stale()
