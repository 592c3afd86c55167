"""Writes of the core app: intake of tickets and enqueueing of runs."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone
from kombu.exceptions import KombuError

from agentops import ids
from agentops.models import ApiToken, Run, Ticket

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Submission:
    ticket: Ticket
    run: Run
    created: bool


def new_trace_id() -> str:
    return ids.trace_id()


def ticket_submit(
    *,
    customer_email: str,
    subject: str,
    body: str,
    external_id: str | None = None,
    source: str = Ticket.Source.API,
) -> Submission:
    """Store a ticket and its run, and enqueue the run once the transaction commits.

    Idempotent on external_id: the same id returns the first ticket and run,
    never a second run, even when two submissions race.
    """
    external_id = external_id or None
    if external_id is not None:
        existing = _existing_submission(external_id)
        if existing is not None:
            return existing
    try:
        with transaction.atomic():
            ticket = Ticket.objects.create(
                customer_email=customer_email,
                subject=subject,
                body=body,
                external_id=external_id,
                source=source,
            )
            run = Run.objects.create(ticket=ticket, trace_id=new_trace_id())
            run_enqueue_on_commit(run_id=run.pk)
    except IntegrityError:
        # Another request stored the same external_id between our read and write.
        existing = _existing_submission(external_id) if external_id else None
        if existing is None:
            raise
        return existing
    return Submission(ticket=ticket, run=run, created=True)


def _existing_submission(external_id: str) -> Submission | None:
    ticket = Ticket.objects.filter(external_id=external_id).first()
    if ticket is None:
        return None
    run = ticket.runs.order_by("created_at", "pk").first()
    return Submission(ticket=ticket, run=run, created=False)


def run_enqueue_on_commit(*, run_id: int) -> None:
    """Enqueue the run's task after the current transaction commits (or now, outside one)."""
    from agentops.tasks import advance_run

    transaction.on_commit(lambda: _send(run_id, lambda: advance_run.delay(run_id)))


def _send(run_id: int, send) -> None:
    """Hand the task to the broker; if the broker is away, the stored run is not lost.

    The run is committed already: the sweeper (beat) re-enqueues runs queued too long
    and runs whose lease ended, so a refused send only delays the run.
    """
    try:
        send()
    except (KombuError, OSError) as exc:
        logger.warning(
            "broker unavailable (%s: %s): run %s is stored and left for the sweeper",
            type(exc).__name__,
            exc,
            run_id,
        )


API_TOKEN_PREFIX = "aot_"  # noqa: S105 - a label, not a secret
# last_used_at is for people ("is this token still in use?"), not an audit log:
# minute precision spares the database a write on every API request.
API_TOKEN_TOUCH_INTERVAL = timedelta(minutes=1)


def api_token_create(*, name: str) -> tuple[ApiToken, str]:
    """A new API token and its raw value, which is shown once and never stored."""
    name = name.strip()
    max_length = ApiToken._meta.get_field("name").max_length
    if not name or len(name) > max_length:
        raise ValueError(f"A token name is 1 to {max_length} characters, got {len(name)}.")
    raw = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        name=name,
        token_hash=ApiToken.hash(raw),
        prefix=raw[: ApiToken._meta.get_field("prefix").max_length],
    )
    return token, raw


def api_token_touch(*, token: ApiToken) -> None:
    """Record that the token was used, at most once per API_TOKEN_TOUCH_INTERVAL."""
    now = timezone.now()
    if token.last_used_at is not None and now - token.last_used_at < API_TOKEN_TOUCH_INTERVAL:
        return
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    token.last_used_at = now
