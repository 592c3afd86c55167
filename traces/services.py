"""Writes of spans. The runtime saves them in the transaction of the change they describe."""

from __future__ import annotations

import hashlib
from datetime import datetime
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from agentops import ids
from traces.models import Span
from traces.payloads import LEDGER_REQUEST
from traces.redact import redact, redact_text


def new_span_id() -> str:
    return ids.span_id()


def span_build(
    *,
    run,
    kind: str,
    name: str,
    step: int,
    attempt: int = 1,
    model: str = "",
    input=None,
    attributes: dict | None = None,
    parent_span_id: str = "",
) -> Span:
    """A started span, not yet saved."""
    return Span(
        run=run,
        span_id=new_span_id(),
        parent_span_id=parent_span_id,
        kind=kind,
        name=name,
        step=step,
        attempt=attempt,
        model=model,
        input=redact(input),
        attributes=redact(attributes or {}),
        started_at=timezone.now(),
    )


def root_span_id(run) -> str:
    """The run's root span id: the first half of its trace id (see ids.trace_id)."""
    return run.trace_id[:16]


def root_span_build(*, run, started_at: datetime) -> Span:
    """The run's root span, started at `started_at`, not yet saved.

    The root is written once, finished, when the run ends (everything it says is the
    run's by then); until then the trace pages show it open, as read from the run
    (selectors.run_spans_list).
    """
    span = span_build(
        run=run,
        kind=Span.Kind.RUN,
        name="run",
        step=0,
        input={"ticket": str(run.ticket.code), "subject": run.ticket.subject},
        attributes=_replay_attributes(run),
    )
    span.span_id = root_span_id(run)
    span.started_at = started_at
    return span


def ledger_call_span(*, run, effect, step: int) -> Span:
    """The span of a side effect's latest attempt, as its ledger row records it, not
    yet saved: a call's span is written with its outcome, so a call in flight, or
    cut short by a dead worker, is known from the row alone (status started).

    Its id comes from the ledger key: the trace page finds the same span on every look.
    """
    span = span_build(
        run=run,
        kind=Span.Kind.TOOL,
        name=effect.tool,
        step=step,
        attempt=max(effect.attempts, 1),
        input=LEDGER_REQUEST,
        attributes={"idempotency_key": effect.idempotency_key, "ledger": "new"},
        parent_span_id=root_span_id(run),
    )
    span.span_id = hashlib.blake2b(effect.idempotency_key.encode(), digest_size=8).hexdigest()
    span.started_at = effect.updated_at
    return span


def _replay_attributes(run) -> dict | None:
    """What the root span says of a replay: which run it replays, and how."""
    if not run.is_replay:
        return None
    return {
        "replay_mode": run.mode,
        "replay_of": str(run.replay_of.code),
        "replay_from_step": run.replay_from_step,
        "dry_run": run.dry_run,
    }


# What span_finish sets: all that changes of a span once it is saved started.
OUTCOME_FIELDS = (
    "ended_at",
    "status",
    "output",
    "error_class",
    "error_message",
    "input_tokens",
    "output_tokens",
    "cost",
    "attributes",
)


def span_finish(
    span: Span,
    *,
    output=None,
    error_class: str = "",
    error_message: str = "",
    input_tokens: int = 0,
    output_tokens: int = 0,
    cost: Decimal | int = 0,
    attributes: dict | None = None,
) -> Span:
    """Mark a span ended (ok, or error when error_class is given). Does not save."""
    span.ended_at = timezone.now()
    span.status = Span.Status.ERROR if error_class else Span.Status.OK
    span.output = redact(output)
    span.error_class = error_class
    span.error_message = redact_text(error_message)
    span.input_tokens = input_tokens
    span.output_tokens = output_tokens
    span.cost = cost
    if attributes:
        span.attributes = {**span.attributes, **redact(attributes)}
    return span


# --- retention ------------------------------------------------------------------------


def _final_runs_before(before: datetime):
    from agentops.models import Run

    return Run.objects.filter(created_at__lt=before, status__in=Run.FINAL_STATUSES)


def spans_prune(*, before: datetime, batch: int = 5000, dry_run: bool = False) -> int:
    """Delete the spans of finished runs created before `before`, `batch` rows a transaction.

    Short transactions: each deletes one batch by primary key and commits, so no
    lock is held long and the runtime's writes go on. Unfinished runs keep theirs.
    Returns how many spans were (or, with dry_run, would be) deleted.
    """
    spans = Span.objects.filter(run__in=_final_runs_before(before))
    if dry_run:
        return spans.count()
    deleted = 0
    while True:
        with transaction.atomic():
            ids = list(spans.order_by().values_list("pk", flat=True)[:batch])
            if not ids:
                return deleted
            count, _ = Span.objects.filter(pk__in=ids).delete()
        deleted += count


def span_payloads_drop(*, before: datetime, batch: int = 5000, dry_run: bool = False) -> int:
    """Drop input and output of the spans of resolved runs created before `before`.

    Status, error class, attempt, model, tokens, cost and timings stay, so the
    dashboard's figures and the waterfall survive. Returns how many spans changed.
    """
    from agentops.models import Run

    runs = Run.objects.filter(created_at__lt=before, status=Run.Status.RESOLVED)
    spans = Span.objects.filter(run__in=runs).filter(
        Q(input__isnull=False) | Q(output__isnull=False)
    )
    if dry_run:
        return spans.count()
    changed = 0
    while True:
        with transaction.atomic():
            ids = list(spans.order_by().values_list("pk", flat=True)[:batch])
            if not ids:
                return changed
            changed += Span.objects.filter(pk__in=ids).update(input=None, output=None)


# --- alerts ---------------------------------------------------------------------------


def alerts_check(*, now: datetime | None = None) -> list:
    """Evaluate every enabled rule: open an incident when one crosses, close it when back.

    An incident opens once (a partial unique constraint allows one open incident per
    rule), so a rule that stays above its threshold notifies once, not every minute.
    Returns the incidents opened by this check.
    """
    from traces.alerts import alert_link, alert_value
    from traces.models import AlertRule, Incident

    now = now or timezone.now()
    opened = []
    for rule in AlertRule.objects.filter(enabled=True):
        value = alert_value(rule=rule, now=now)
        if value is not None and value > rule.threshold:
            try:
                with transaction.atomic():
                    incident = Incident.objects.create(rule=rule, value=value, opened_at=now)
            except IntegrityError:
                continue  # already open: notified when it opened
            link = alert_link(rule=rule, now=now)
            transaction.on_commit(
                lambda i=incident, link=link: incident_notify(incident=i, link=link)
            )
            opened.append(incident)
        else:
            # Back under (or nothing to measure): one conditional UPDATE closes it.
            Incident.objects.filter(rule=rule, resolved_at__isnull=True).update(resolved_at=now)
    return opened


def incident_notify(*, incident, link: str) -> None:
    """Email the alert recipients and, when configured, post to a Slack-compatible webhook.

    Failures are logged: an alert that cannot be sent must not stop the next check.
    """
    import json
    import logging
    import urllib.request

    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.mail import send_mail

    logger = logging.getLogger(__name__)
    rule = incident.rule
    url = settings.SITE_URL.rstrip("/") + link
    text = (
        f"[agentops] {rule.name}: {rule.get_metric_display()} is {incident.value:.2f}, "
        f"above {rule.threshold} (window {rule.window_minutes} min). See {url}"
    )
    recipients = list(settings.ALERT_EMAILS) or list(
        get_user_model()
        .objects.filter(is_superuser=True, is_active=True)
        .exclude(email="")
        .values_list("email", flat=True)
    )
    if recipients:
        try:
            send_mail(f"[agentops] {rule.name}", text, None, recipients)
        except Exception:
            logger.exception("alert email for %s could not be sent", rule.name)
    if settings.ALERT_WEBHOOK_URL:
        request = urllib.request.Request(  # noqa: S310 (an admin-set http(s) URL)
            settings.ALERT_WEBHOOK_URL,
            data=json.dumps({"text": text}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=5):  # noqa: S310
                pass
        except Exception:
            logger.exception("alert webhook for %s failed", rule.name)
