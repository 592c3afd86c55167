"""Find runs whose task was lost and enqueue them again (called by beat)."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from agentops.models import Run

logger = logging.getLogger(__name__)


def runs_sweep_stale(*, limit: int = 500) -> list[int]:
    """Re-enqueue runs queued too long or running with an expired lease.

    Enqueueing twice is harmless: the run is claimed with a conditional UPDATE.
    """
    from agentops.services import run_enqueue_on_commit

    now = timezone.now()
    stale_queued = now - timedelta(seconds=settings.RUN_STALE_SECONDS)
    ids = list(
        Run.objects.filter(
            Q(status=Run.Status.QUEUED, updated_at__lt=stale_queued)
            | Q(status=Run.Status.RUNNING, lease_expires_at__lt=now)
        )
        .order_by("updated_at")
        .values_list("pk", flat=True)[:limit]
    )
    for run_id in ids:
        run_enqueue_on_commit(run_id=run_id)
    if ids:
        logger.info("re-enqueued %d stale runs", len(ids))
    return ids
