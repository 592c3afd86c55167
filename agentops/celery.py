"""The Celery app and its reliability settings.

A run task may be delivered twice (acks_late + reject_on_worker_lost re-queue a
task whose worker died); that is harmless because a run is claimed with one
conditional UPDATE before anything happens (see agentops.services.run_claim).
"""

import os

from celery import Celery
from celery.signals import task_postrun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentops.settings")

app = Celery("agentops")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    task_track_started=False,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    # print() and the console mail backend write to stdout: that is not a warning.
    worker_redirect_stdouts_level="INFO",
    task_default_queue="agentops",
    # Celery's Django fix-up closes every database connection after every task
    # unless this is set: a new PostgreSQL session (TCP, auth, backend fork) per
    # task. Reuse each connection for up to 1000 tasks instead; CONN_MAX_AGE and
    # the health check still apply (see _close_old_connections below).
    CELERY_DB_REUSE_MAX=1000,
    beat_schedule={
        "sweep-stale-runs": {"task": "agentops.tasks.sweep_stale_runs", "schedule": 30.0},
        "expire-pending-actions": {
            "task": "approvals.tasks.expire_pending_actions",
            "schedule": 60.0,
        },
        "check-alerts": {"task": "traces.tasks.check_alerts", "schedule": 60.0},
    },
)


@task_postrun.connect
def _close_old_connections(sender=None, **kwargs) -> None:
    """What Django does at the end of a request: drop a connection that is too old or broken."""
    if getattr(sender.request, "is_eager", False):
        return  # inside the caller's transaction (tests): not ours to close
    from django.db import close_old_connections

    close_old_connections()


app.autodiscover_tasks()
# The benchmark's floor task lives outside the apps' tasks modules.
app.conf.include = ["agentops.bench.floor", "agentops.bench.replayed"]
