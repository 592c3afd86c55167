"""Reads of the core app. Keyword-only, typed, and a fixed number of queries each."""

from __future__ import annotations

import uuid

from django.db.models import Prefetch

from agentops.models import ApiToken, Effect, Run
from approvals.models import PendingAction
from traces.models import Span


def api_token_get_active(*, raw: str) -> ApiToken | None:
    """The unrevoked token whose hash matches `raw`, or None. One query.

    The lookup is by SHA-256 of the presented token, so response time does not
    depend on how much of a stored secret a guess got right.
    """
    if not raw:
        return None
    return ApiToken.objects.filter(token_hash=ApiToken.hash(raw), revoked_at__isnull=True).first()


def run_get_for_api(*, code: str | uuid.UUID) -> Run | None:
    """A run with its ticket, spans, effects and pending actions, or None.

    Four queries whatever the size of the run: the run joined to its ticket,
    then one each for spans, effects and pending actions. A malformed code is
    simply not found.
    """
    try:
        code = code if isinstance(code, uuid.UUID) else uuid.UUID(str(code))
    except ValueError:
        return None
    return (
        Run.objects.select_related("ticket")
        # The API does not show the conversation (its turns are not read either).
        .defer("tool_results", "ticket__body")
        .prefetch_related(
            Prefetch(
                "spans",
                # Payloads can be large; the API shows the outline of each step.
                queryset=Span.objects.only(
                    "run_id", "kind", "name", "status", "error_class", "attempt", "started_at"
                ).order_by("started_at", "id"),
            ),
            Prefetch(
                "effects",
                queryset=Effect.objects.only(
                    "run_id", "tool", "idempotency_key", "status", "created_at"
                ).order_by("created_at", "id"),
            ),
            Prefetch(
                "pending_actions",
                queryset=PendingAction.objects.only(
                    "run_id", "code", "tool", "amount_cents", "status", "created_at"
                ).order_by("created_at", "id"),
            ),
        )
        .filter(code=code)
        .first()
    )
