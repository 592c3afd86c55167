"""The Celery app and its reliability settings.

A run task may be delivered twice (acks_late + reject_on_worker_lost re-queue a
task whose worker died); that is harmless because a run is claimed with one
conditional UPDATE before anything happens (see agentops.services.run_claim).
"""

import os

from celery import Celery

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
    beat_schedule={
        "sweep-stale-runs": {"task": "agentops.tasks.sweep_stale_runs", "schedule": 30.0},
        "expire-pending-actions": {
            "task": "approvals.tasks.expire_pending_actions",
            "schedule": 60.0,
        },
        "check-alerts": {"task": "traces.tasks.check_alerts", "schedule": 60.0},
    },
)
app.autodiscover_tasks()
# The benchmark's floor task lives outside the apps' tasks modules.
app.conf.include = ["agentops.bench.floor"]
