"""The simulated payment provider: the embedded default gateway.

It plays the provider's part, not the client's: it keeps its own refund records
(agentops.simgateway), commits them in its own transactions, deduplicates on
idempotency keys the way Stripe does, rejects what a real provider would reject,
and fails on demand so the demo and the tests can show the seed incident (a
timeout that arrives after the refund was committed) and that nothing is paid twice.

Faults, read from settings at every call so tests can change them:

- GATEWAY_LATENCY_MS: added latency per refund call.
- GATEWAY_SERVER_ERROR: probability of a 500 before anything is committed.
- GATEWAY_RATE_LIMIT: probability of a 429 (Retry-After 0.05 s) before anything is committed.
- GATEWAY_TIMEOUT_AFTER_COMMIT: probability that a call which committed a new
  refund answers with a timeout instead of the refund.
- GATEWAY_FAULT_SEED (optional): seeds the random draws, for reproducible runs.
- GATEWAY_LEGACY: a provider that ignores idempotency keys. A repeated call pays
  again; only the metadata we send (ticket, order, run, and the ledger key, as
  the Stripe adapter sends it) lets us find a refund it made. This is the
  provider the effect ledger must protect us from on its own.

ScriptedFault rows inject a given fault for one payment, `remaining` more times,
whatever the probabilities say.
"""

from __future__ import annotations

import hashlib
import json
import random
import secrets
import threading
import time
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import BooleanField, F, Q, QuerySet
from django.db.models.expressions import RawSQL

from agentops.db.batch import Statement, send_now
from agentops.integrations.errors import (
    IdempotencyConflict,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from agentops.integrations.payments import GatewayRefund
from agentops.shop.models import Order
from agentops.simgateway.models import ProviderRefund, ScriptedFault

PROVIDER = "simulated"
RATE_LIMIT_RETRY_AFTER = 0.05
LEDGER_KEY = "ledger_key"  # the metadata field carrying our key (as in the Stripe adapter)

_UNSEEDED = object()
_rng = random.Random()
_rng_seed: object = _UNSEEDED
_rng_lock = threading.Lock()


def reset_fault_rng() -> None:
    """Start the random fault sequence again from GATEWAY_FAULT_SEED (tests, demos)."""
    global _rng_seed
    with _rng_lock:
        _rng_seed = _UNSEEDED


def _draw(probability: float) -> bool:
    """True with the given probability, from the (optionally seeded) fault sequence."""
    global _rng_seed
    if probability <= 0:
        return False  # no draw, so a seeded sequence is not shifted by disabled faults
    with _rng_lock:
        seed = getattr(settings, "GATEWAY_FAULT_SEED", None)
        if _rng_seed is _UNSEEDED or seed != _rng_seed:
            _rng.seed(seed)
            _rng_seed = seed
        return _rng.random() < probability


def _legacy() -> bool:
    return bool(getattr(settings, "GATEWAY_LEGACY", False))


def request_hash(*, payment_ref: str, amount_cents: int, currency: str) -> str:
    """What makes two requests with one idempotency key "the same request"."""
    canonical = json.dumps(
        {"payment_ref": payment_ref, "amount_cents": amount_cents, "currency": currency},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _refund_row(
    *, payment_ref: str, amount_cents: int, currency: str, idempotency_key, digest: str, metadata
) -> ProviderRefund:
    """A new refund of the provider's, not yet saved, under a fresh refund id."""
    return ProviderRefund(
        refund_id=f"re_{secrets.token_hex(12)}",
        payment_ref=payment_ref,
        amount_cents=amount_cents,
        currency=currency,
        idempotency_key=idempotency_key,
        request_hash=digest,
        metadata=metadata,
    )


def _as_gateway_refund(row: ProviderRefund) -> GatewayRefund:
    return GatewayRefund(
        refund_id=row.refund_id,
        payment_ref=row.payment_ref,
        amount_cents=row.amount_cents,
        currency=row.currency,
        idempotency_key=row.idempotency_key,
        metadata=dict(row.metadata),
        created_at=row.created_at,
    )


def _pending_faults(payment_ref: str) -> QuerySet[ScriptedFault]:
    """Faults still scripted for a payment."""
    return ScriptedFault.objects.filter(payment_ref=payment_ref, remaining__gt=0)


def _any_fault_pending(payment_ref: str) -> RawSQL:
    """_pending_faults(payment_ref).exists(), as a column of another query.

    Written out: the ORM's Exists() took ~0.25 ms to compile, at every refund.
    """
    return RawSQL(  # noqa: S611 (the value goes as a parameter)
        f"EXISTS (SELECT 1 FROM {ScriptedFault._meta.db_table} "  # noqa: S608 (a model's table)
        "WHERE payment_ref = %s AND remaining > 0)",
        [payment_ref],
        output_field=BooleanField(),
    )


def _take_scripted_fault(payment_ref: str, kinds: list[str]) -> str | None:
    """Consume one scripted fault of these kinds for the payment, if one is left.

    The decrement is a conditional UPDATE, so two concurrent calls never both
    consume the last one.
    """
    candidates = ScriptedFault.objects.filter(
        payment_ref=payment_ref, kind__in=kinds, remaining__gt=0
    ).order_by("pk")
    for fault in candidates:
        taken = ScriptedFault.objects.filter(pk=fault.pk, remaining__gt=0).update(
            remaining=F("remaining") - 1
        )
        if taken:
            return fault.kind
    return None


_REFUND_COLUMNS = (
    "refund_id",
    "payment_ref",
    "amount_cents",
    "currency",
    "idempotency_key",
    "request_hash",
    "metadata",
    "created_at",
)
# Insert the refund if the charge's total, less what was refunded on the payment,
# covers it, and if its key was not used. Raw SQL because the ORM has no INSERT ...
# SELECT ... WHERE ... ON CONFLICT; SQLite (3.24+) and PostgreSQL accept it as written.
# Run after the charge is locked: the SUM is then read from a snapshot that holds
# every refund committed on the payment before ours.
_INSERT_IF_IT_FITS = f"""
    INSERT INTO {ProviderRefund._meta.db_table} ({", ".join(_REFUND_COLUMNS)})
    SELECT {", ".join(["%s"] * len(_REFUND_COLUMNS))}
    WHERE %s <= %s - (
        SELECT COALESCE(SUM(amount_cents), 0) FROM {ProviderRefund._meta.db_table}
        WHERE payment_ref = %s
    )
    ON CONFLICT (idempotency_key) DO NOTHING
"""  # noqa: S608 (table and columns from the model, values as parameters)


def _insert_if_it_fits(row: ProviderRefund, *, total_cents: int) -> bool:
    """Insert the refund in one statement, unless it is too much or its key was used."""
    values = [
        ProviderRefund._meta.get_field(name).get_db_prep_save(getattr(row, name), connection)
        for name in _REFUND_COLUMNS
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            _INSERT_IF_IT_FITS, [*values, row.amount_cents, total_cents, row.payment_ref]
        )
        return cursor.rowcount == 1


# The usual refund in one round trip (see SimulatedGateway._create_at_once): the
# charge is locked by the first statement, and this one, which takes its snapshot
# after the lock was granted, inserts the refund only if no fault is scripted for
# the payment, the currency is the charge's, what is left covers it and the key is new.
_INSERT_AT_ONCE = f"""
    INSERT INTO {ProviderRefund._meta.db_table} ({", ".join(_REFUND_COLUMNS)})
    SELECT {", ".join(["%s"] * len(_REFUND_COLUMNS))}
    FROM {Order._meta.db_table} AS charge
    WHERE charge.id = (
        SELECT id FROM {Order._meta.db_table} WHERE payment_ref = %s ORDER BY id LIMIT 1
    )
    AND UPPER(charge.currency) = %s
    AND NOT EXISTS (
        SELECT 1 FROM {ScriptedFault._meta.db_table} WHERE payment_ref = %s AND remaining > 0
    )
    AND %s <= charge.total_cents - (
        SELECT COALESCE(SUM(amount_cents), 0) FROM {ProviderRefund._meta.db_table}
        WHERE payment_ref = %s
    )
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING 1
"""  # noqa: S608 (tables and columns from the models, values as parameters)
_LOCK_CHARGE = (
    f"SELECT id FROM {Order._meta.db_table} WHERE payment_ref = %s "  # noqa: S608
    "ORDER BY id LIMIT 1 FOR UPDATE"
)


def _random_faults_off() -> bool:
    """No 500 or 429 can be drawn: nothing to decide before the refund is committed."""
    return (
        getattr(settings, "GATEWAY_SERVER_ERROR", 0.0) <= 0
        and getattr(settings, "GATEWAY_RATE_LIMIT", 0.0) <= 0
    )


class SimulatedGateway:
    name = PROVIDER

    def refund(
        self,
        *,
        payment_ref: str,
        amount_cents: int,
        currency: str,
        idempotency_key: str,
        metadata: dict,
    ) -> GatewayRefund:
        latency_ms = getattr(settings, "GATEWAY_LATENCY_MS", 0)
        if latency_ms > 0:
            time.sleep(latency_ms / 1000)

        currency = currency.upper()
        digest = request_hash(payment_ref=payment_ref, amount_cents=amount_cents, currency=currency)
        # The client's side, like the Stripe adapter: our key also travels in the metadata,
        # so a refund can be found by it at a provider that ignores the idempotency key.
        metadata = {**metadata, LEDGER_KEY: idempotency_key}
        request = {
            "payment_ref": payment_ref,
            "amount_cents": amount_cents,
            "currency": currency,
            "idempotency_key": None if _legacy() else idempotency_key,
            "digest": digest,
            "metadata": metadata,
        }
        try:
            outcome = (
                self._create_at_once(**request)
                if amount_cents > 0 and _random_faults_off()
                else None
            )
            if outcome is None:
                outcome = self._create(**request, faults_taken=False)
            if outcome is None:
                # A fault is scripted for this payment: take it the exact, slower way.
                # Infrastructure faults happen before the provider looks at the
                # request: nothing is committed, and replays are not spared.
                self._fail_before_commit(payment_ref)
                outcome = self._create(**request, faults_taken=True)
            refund, created, timeout_scripted = outcome
        except IntegrityError:
            # A concurrent request with the same key committed first; answer as
            # the provider would answer a replay of it.
            existing = ProviderRefund.objects.filter(idempotency_key=idempotency_key).first()
            if existing is None:
                raise
            return self._replay(existing, digest)

        # Only a call that committed a new refund can lose its answer this way; a
        # replay commits nothing, so retrying with the same key is the way out.
        if created and (
            timeout_scripted or _draw(getattr(settings, "GATEWAY_TIMEOUT_AFTER_COMMIT", 0.0))
        ):
            # The seed incident: the refund is committed, the answer is lost.
            raise ProviderTimeout(
                f"timed out waiting for refund of {payment_ref}",
                provider=PROVIDER,
                may_have_committed=True,
            )
        return refund

    def find_refund(self, *, payment_ref: str, idempotency_key: str) -> GatewayRefund | None:
        # By the key where the provider kept it, else by the metadata we sent (legacy mode).
        row = (
            ProviderRefund.objects.filter(payment_ref=payment_ref)
            .filter(Q(idempotency_key=idempotency_key) | Q(metadata__ledger_key=idempotency_key))
            .order_by("created_at", "pk")
            .first()
        )
        return _as_gateway_refund(row) if row else None

    def list_refunds(
        self, *, payment_ref: str | None = None, since: datetime | None = None
    ) -> list[GatewayRefund]:
        rows = ProviderRefund.objects.order_by("created_at", "pk")
        if payment_ref is not None:
            rows = rows.filter(payment_ref=payment_ref)
        if since is not None:
            rows = rows.filter(created_at__gte=since)
        return [_as_gateway_refund(row) for row in rows]

    # --- internals ----------------------------------------------------------

    def _fail_before_commit(self, payment_ref: str, *, scripted: bool = True) -> None:
        """Raise a 500 or a 429: one scripted for the payment, else at random.

        With scripted=False only the random draws are made (no fault was pending).
        """
        kind = (
            _take_scripted_fault(
                payment_ref, [ScriptedFault.Kind.SERVER_ERROR, ScriptedFault.Kind.RATE_LIMIT]
            )
            if scripted
            else None
        )
        if kind == ScriptedFault.Kind.SERVER_ERROR or _draw(
            getattr(settings, "GATEWAY_SERVER_ERROR", 0.0)
        ):
            raise ProviderUnavailable(
                "500 internal server error", provider=PROVIDER, status_code=500
            )
        if kind == ScriptedFault.Kind.RATE_LIMIT or _draw(
            getattr(settings, "GATEWAY_RATE_LIMIT", 0.0)
        ):
            raise RateLimited(
                "429 too many requests", provider=PROVIDER, retry_after=RATE_LIMIT_RETRY_AFTER
            )

    def _replay(self, existing: ProviderRefund, digest: str) -> GatewayRefund:
        if existing.request_hash != digest:
            raise IdempotencyConflict(
                f"idempotency key {existing.idempotency_key!r} was used for another request "
                f"({existing.amount_cents} {existing.currency} on {existing.payment_ref})",
                provider=PROVIDER,
            )
        return _as_gateway_refund(existing)

    def _create_at_once(
        self,
        *,
        payment_ref: str,
        amount_cents: int,
        currency: str,
        idempotency_key: str | None,
        digest: str,
        metadata: dict,
    ) -> tuple[GatewayRefund, bool, bool] | None:
        """The usual request, a new refund that fits, in one round trip; else None,
        having written nothing, and _create answers it the exact way.

        On PostgreSQL: the charge's lock and the insert in one pipeline, one
        transaction (agentops.db.batch), where _create sends BEGIN, the lock, the
        insert and COMMIT one by one. SQLite serialises writers on its own: the
        insert alone.
        """
        row = _refund_row(
            payment_ref=payment_ref,
            amount_cents=amount_cents,
            currency=currency,
            idempotency_key=idempotency_key,
            digest=digest,
            metadata=metadata,
        )
        values = [
            ProviderRefund._meta.get_field(name).get_db_prep_save(getattr(row, name), connection)
            for name in _REFUND_COLUMNS
        ]
        inserted: list[tuple] = []
        insert = Statement(
            _INSERT_AT_ONCE,
            [*values, payment_ref, currency, payment_ref, amount_cents, payment_ref],
            returned=inserted.extend,
        )
        if connection.vendor == "postgresql":
            send_now([Statement(_LOCK_CHARGE, [payment_ref], is_select=True), insert])
        else:
            send_now([insert])
        return (_as_gateway_refund(row), True, False) if inserted else None

    def _create(
        self,
        *,
        payment_ref: str,
        amount_cents: int,
        currency: str,
        idempotency_key: str | None,
        digest: str,
        metadata: dict,
        faults_taken: bool,
    ) -> tuple[GatewayRefund, bool, bool] | None:
        """Answer a replay, or validate and commit one refund.

        With no key (legacy mode) every call is new. Returns (refund, created,
        whether a scripted timeout_after_commit fired); or None, having written
        nothing, when faults_taken is False and a fault is scripted for the payment.

        The usual call, when random faults are configured (else _create_at_once
        answers it), costs BEGIN, one SELECT of the charge FOR UPDATE (which also
        says whether any fault is scripted), one INSERT if it fits, and COMMIT. The
        refunds are summed in a statement after the lock, not in the locking one:
        under READ COMMITTED a subquery of the locking statement would see the rows
        of its snapshot, taken before a concurrent refund on the payment committed
        and released the lock.
        """
        with transaction.atomic():
            # Lock the charge so two refunds on one payment cannot both pass the
            # "left to refund" check (SQLite serialises writers on its own).
            charges = Order.objects.select_for_update().filter(payment_ref=payment_ref)
            if not faults_taken:
                charges = charges.annotate(faulted=_any_fault_pending(payment_ref))
            charge = charges.order_by("pk").first()
            if not faults_taken:
                # Scripted faults are rare: when one is pending, leave at once, and
                # let the caller take it outside this transaction (a fault taken in
                # here would be rolled back with the error it raises).
                faulted = charge.faulted if charge else _pending_faults(payment_ref).exists()
                if faulted:
                    return None
                self._fail_before_commit(payment_ref, scripted=False)

            # The usual request, a new one that fits: insert it if what is left on
            # the charge covers it and the key is new, in one statement. Anything
            # else (a replay, a reused key, too much) inserts nothing and is
            # answered below.
            if amount_cents > 0 and charge is not None and charge.currency.upper() == currency:
                row = _refund_row(
                    payment_ref=payment_ref,
                    amount_cents=amount_cents,
                    currency=currency,
                    idempotency_key=idempotency_key,
                    digest=digest,
                    metadata=metadata,
                )
                if _insert_if_it_fits(row, total_cents=charge.total_cents):
                    return (
                        _as_gateway_refund(row),
                        True,
                        self._timeout_scripted(payment_ref, faults_taken),
                    )

            # The payment's refunds, and the refund already made with this key (on
            # whichever payment), in one statement.
            mine = Q(payment_ref=payment_ref)
            if idempotency_key is not None:
                mine |= Q(idempotency_key=idempotency_key)
            rows = list(ProviderRefund.objects.filter(mine).order_by())
            if idempotency_key is not None:
                for existing in rows:
                    if existing.idempotency_key == idempotency_key:
                        return self._replay(existing, digest), False, False

            if amount_cents <= 0:
                raise ProviderRejected(
                    f"amount must be a positive integer, got {amount_cents}",
                    provider=PROVIDER,
                    code="invalid_amount",
                )
            if charge is None:
                raise ProviderRejected(
                    f"no such payment: {payment_ref!r}", provider=PROVIDER, code="resource_missing"
                )
            if charge.currency.upper() != currency:
                raise ProviderRejected(
                    f"payment {payment_ref} is in {charge.currency}, not {currency}",
                    provider=PROVIDER,
                    code="currency_mismatch",
                )
            refunded = sum(row.amount_cents for row in rows if row.payment_ref == payment_ref)
            left = charge.total_cents - refunded
            if left <= 0:
                raise ProviderRejected(
                    f"payment {payment_ref} has already been refunded in full",
                    provider=PROVIDER,
                    code="charge_already_refunded",
                )
            if amount_cents > left:
                raise ProviderRejected(
                    f"refund of {amount_cents} is greater than the {left} left to refund "
                    f"on {payment_ref}",
                    provider=PROVIDER,
                    code="amount_too_large",
                )

            row = _refund_row(
                payment_ref=payment_ref,
                amount_cents=amount_cents,
                currency=currency,
                idempotency_key=idempotency_key,
                digest=digest,
                metadata=metadata,
            )
            row.save()
            timeout_scripted = self._timeout_scripted(payment_ref, faults_taken)
        return _as_gateway_refund(row), True, timeout_scripted

    def _timeout_scripted(self, payment_ref: str, faults_taken: bool) -> bool:
        """Take a scripted timeout_after_commit, in the transaction of the refund it
        applies to; only looked for when a fault was pending as the call began."""
        return (
            faults_taken
            and _take_scripted_fault(payment_ref, [ScriptedFault.Kind.TIMEOUT_AFTER_COMMIT])
            is not None
        )
