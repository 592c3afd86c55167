"""agentops.db.batch: a transaction's writes go out together, all or nothing.

On PostgreSQL in one query (a simple-protocol query is one transaction); on
SQLite one by one inside atomic(). Both keep nothing of a transaction whose
statement failed, whether the failure is the database's (a duplicate key) or an
expected row count that did not hold (the lease fence).
"""

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agentops.bench.runner import statements, write_transactions
from agentops.db import hot
from agentops.db.batch import write_transaction
from agentops.models import Run, Ticket
from agentops.services import new_trace_id
from traces.models import Span

pytestmark = pytest.mark.django_db


class LeaseGone(Exception):
    pass


@pytest.fixture
def run():
    ticket = Ticket.objects.create(customer_email="ada@example.com", subject="s", body="b")
    return Run.objects.create(ticket=ticket, trace_id=new_trace_id())


def _span(run, span_id):
    return Span(
        run=run,
        trace_id=run.trace_id,
        span_id=span_id,
        kind=Span.Kind.MODEL,
        name="messages.create",
        started_at=timezone.now(),
    )


def _step(run, *, held: dict, span_ids=("a" * 16, "b" * 16)) -> list[Span]:
    spans = [_span(run, span_id) for span_id in span_ids]
    hot.update_where(Run, {"step_count": 1}, where=held, or_raise=LeaseGone)
    hot.insert_many(spans)
    hot.update_where(Run, {"model_calls": 1}, where={"id": run.pk})
    return spans


def test_the_writes_of_a_transaction_go_out_together_and_land_together(run):
    with CaptureQueriesContext(connection) as queries, write_transaction():
        spans = _step(run, held={"id": run.pk, "status": Run.Status.QUEUED})
        assert all(s.pk is None for s in spans)  # not sent yet

    run.refresh_from_db()
    assert (run.step_count, run.model_calls) == (1, 1)
    assert [s.pk for s in spans] == list(
        Span.objects.filter(run=run).order_by("span_id").values_list("pk", flat=True)
    )
    assert statements(queries.captured_queries) == 3
    assert write_transactions(queries.captured_queries) == 1
    if connection.vendor == "postgresql":
        assert len(queries) == 1  # one round trip, BEGIN and COMMIT included


def test_a_failed_fence_keeps_nothing_of_the_transaction(run):
    with pytest.raises(LeaseGone), write_transaction():
        _step(run, held={"id": run.pk, "status": Run.Status.RUNNING})  # not held

    run.refresh_from_db()
    assert (run.step_count, run.model_calls) == (0, 0)
    assert not Span.objects.filter(run=run).exists()


def test_a_duplicate_key_keeps_nothing_of_the_transaction(run):
    hot.insert_many([_span(run, "c" * 16)])

    with pytest.raises(IntegrityError), write_transaction():
        _step(run, held={"id": run.pk}, span_ids=("d" * 16, "c" * 16))

    run.refresh_from_db()
    assert (run.step_count, run.model_calls) == (0, 0)
    assert list(Span.objects.filter(run=run).values_list("span_id", flat=True)) == ["c" * 16]


def test_a_block_that_raises_sends_nothing(run):
    with (
        CaptureQueriesContext(connection) as queries,
        pytest.raises(RuntimeError),
        write_transaction(),
    ):
        _step(run, held={"id": run.pk})
        raise RuntimeError("changed my mind")

    assert len(queries) == 0
    assert not Span.objects.filter(run=run).exists()


def test_nested_blocks_join_the_outermost(run):
    with CaptureQueriesContext(connection) as queries, write_transaction():
        with write_transaction():
            hot.update_where(Run, {"step_count": 2}, where={"id": run.pk})
        assert Run.objects.get(pk=run.pk).step_count == 0  # still waiting for the outer block
        hot.update_where(Run, {"model_calls": 2}, where={"id": run.pk})

    run.refresh_from_db()
    assert (run.step_count, run.model_calls) == (2, 2)
    assert write_transactions(queries.captured_queries) == 1


def test_inside_an_atomic_block_a_failed_transaction_leaves_the_outer_one_usable(run):
    with transaction.atomic():
        with pytest.raises(LeaseGone), write_transaction():
            _step(run, held={"id": run.pk, "status": Run.Status.RUNNING})
        # The outer transaction goes on: its own writes land.
        hot.update_where(Run, {"step_count": 7}, where={"id": run.pk})

    run.refresh_from_db()
    assert (run.step_count, run.model_calls) == (7, 0)
    assert not Span.objects.filter(run=run).exists()
