"""The ledger's rows: begun before the call, completed after, a success never overwritten."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agentops.db import hot
from agentops.db.batch import write_transaction
from agentops.models import Effect, Run, Ticket
from agentops.runtime import ledger
from agentops.runtime.errors import IdempotencyMismatch
from agentops.services import new_trace_id

pytestmark = pytest.mark.django_db


@pytest.fixture
def run():
    ticket = Ticket.objects.create(customer_email="ada@example.com", subject="s", body="b")
    return Run.objects.create(ticket=ticket, trace_id=new_trace_id())


def test_a_new_key_is_begun_with_its_first_attempt_counted(run):
    effect, created = ledger.effect_begin(key="k1", run=run, tool="t", request={"a": 1})

    assert created and effect.pk and effect.attempts == 1
    assert Effect.objects.get(pk=effect.pk).status == Effect.Status.STARTED
    again, created = ledger.effect_begin(key="k1", run=run, tool="t", request={"a": 1})
    assert not created and again.pk == effect.pk
    with pytest.raises(IdempotencyMismatch):
        ledger.effect_begin(key="k1", run=run, tool="t", request={"a": 2})


def test_a_succeeded_effect_is_final(run):
    effect, _ = ledger.effect_begin(key="k2", run=run, tool="t", request={})
    ledger.effect_complete(effect, status=Effect.Status.UNKNOWN, error={"code": "timeout"})
    assert Effect.objects.get(pk=effect.pk).status == Effect.Status.UNKNOWN
    ledger.effect_complete(effect, status=Effect.Status.SUCCEEDED, result={"id": "re_1"})

    ledger.effect_complete(effect, status=Effect.Status.FAILED, error={"code": "late"})

    stored = Effect.objects.get(pk=effect.pk)
    assert (stored.status, stored.result, stored.error) == (
        Effect.Status.SUCCEEDED,
        {"id": "re_1"},
        None,
    )


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's commits")
@pytest.mark.django_db(transaction=True)
def test_a_ledger_write_makes_the_transaction_it_joins_wait_for_its_flush(run):
    """A ledger row is on disk before its side effect, even in a block that asked for
    a commit without a flush (a run's progress): the ledger's own block is durable."""
    no_flush = "set_config('synchronous_commit', 'off', true)"
    with CaptureQueriesContext(connection) as progress, write_transaction(durable=False):
        hot.update_where(Run, {"step_count": 1}, where={"id": run.pk})  # progress only
    with CaptureQueriesContext(connection) as begun, write_transaction(durable=False):
        effect, _ = ledger.effect_begin(key="k9", run=run, tool="t", request={"a": 1})
    with CaptureQueriesContext(connection) as completed, write_transaction(durable=False):
        ledger.effect_complete(effect, status=Effect.Status.SUCCEEDED, result={"ok": True})

    assert no_flush in progress.captured_queries[-1]["sql"]
    assert [q for q in begun.captured_queries if no_flush in q["sql"]] == []
    assert [q for q in completed.captured_queries if no_flush in q["sql"]] == []
    assert Effect.objects.get(pk=effect.pk).status == Effect.Status.SUCCEEDED
