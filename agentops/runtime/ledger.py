"""The effect ledger: every side effect is written before the call and completed after.

A key is derived from the ticket and the action. The same key is sent to the
provider. A key that already succeeded returns the stored result without any
call; a key whose outcome is unknown is resolved by asking the provider or
retrying with the same key, never by calling again with a new one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from django.utils import timezone

from agentops.db import hot
from agentops.db.batch import write_transaction
from agentops.models import Effect
from agentops.runtime.errors import IdempotencyMismatch
from agentops.runtime.tools import canonical_json

# effect_begin's `read` when the caller has not read the row: effect_begin reads it.
UNREAD = object()


def request_hash(request: dict) -> str:
    return hashlib.sha256(canonical_json(request).encode()).hexdigest()


def effect_begin(
    *,
    key: str,
    run,
    tool: str,
    request: dict,
    admit: Callable[[], None] | None = None,
    read: Effect | None | object = UNREAD,
) -> tuple[Effect, bool]:
    """Return the ledger row for `key`, creating it (status started) if new.

    Call inside the transaction that also records the tool span. A new row counts
    the attempt its caller makes right after commit (attempts=1), so no second
    write is needed before the call. Raises IdempotencyMismatch when the key
    exists with another request.

    `admit` is called only when the row is new, before it is inserted: the first
    attempt is let through the downstream's breaker there, and an `admit` that
    raises (the breaker is open) leaves nothing inserted and no attempt counted.

    No savepoint around the insert (a savepoint is a subtransaction: its own
    transaction id and two more round trips). If another transaction inserts the
    same key between this read and the insert, the insert raises IntegrityError
    and the caller's transaction is void: the caller runs it again, and this
    read then finds the row.

    `read` is the row (or None) the caller read for `key` moments before, outside
    this transaction; it is used instead of reading again. It is no staler than a
    read here would be: the row is not locked either way, and a row inserted since
    makes the insert raise IntegrityError as above.
    """
    digest = request_hash(request)
    effect = Effect.objects.filter(idempotency_key=key).first() if read is UNREAD else read
    created = effect is None
    if created:
        if admit is not None:
            admit()
        effect = Effect(
            idempotency_key=key,
            ticket_id=run.ticket_id,
            run=run,
            tool=tool,
            request=request,
            request_hash=digest,
            attempts=1,
        )
        with write_transaction():  # durable, whatever block it joins
            hot.insert_many([effect])
    if effect.request_hash != digest:
        raise IdempotencyMismatch(key)
    return effect, created


def effect_attempted(effect: Effect) -> None:
    """Count an attempt against the provider (before the call)."""
    Effect.objects.filter(pk=effect.pk).update(attempts=effect.attempts + 1)
    effect.attempts += 1


def effect_complete(
    effect: Effect,
    *,
    status: str,
    result: dict | None = None,
    error: dict | None = None,
    provider_ref: str = "",
) -> None:
    """Record the outcome. A succeeded effect is final and is never overwritten."""
    now = timezone.now()
    fields = {
        "status": status,
        "result": result,
        "error": error,
        "provider_ref": provider_ref,
        "completed_at": now if status != Effect.Status.UNKNOWN else None,
        "updated_at": now,
    }
    unfinished = tuple(s for s in Effect.Status.values if s != Effect.Status.SUCCEEDED)
    with write_transaction():  # durable, whatever block it joins
        hot.update_where(Effect, fields, where={"id": effect.pk, "status": unfinished})
    for name, value in fields.items():
        setattr(effect, name, value)
