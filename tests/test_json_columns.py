"""JSON columns on PostgreSQL are written by orjson (agentops.db.postgresql) and read
back as json.dumps would have stored them, through the ORM and the hot path alike."""

import json
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from agentops.db import hot
from agentops.db.batch import write_transaction
from agentops.models import Run, Ticket
from agentops.services import new_trace_id
from traces.models import Span

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the PostgreSQL backend's"),
    pytest.mark.django_db,
]

VALUE = {
    "text": 'Grüße, 東京 — "quoted" \\ and a\nnewline',
    "numbers": [0, -7, 2**63 - 1, 1.5, 1e-7],
    "flags": [True, False, None],
    "nested": {"list": [{"a": []}, {}], "empty": ""},
    3: "an integer key",
}


@pytest.fixture
def run():
    ticket = Ticket.objects.create(customer_email="ada@example.com", subject="s", body="b")
    return Run.objects.create(ticket=ticket, trace_id=new_trace_id())


def _span(run, **fields) -> Span:
    return Span(
        run=run,
        span_id="0" * 15 + "1",
        kind="tool",
        name="t",
        started_at=timezone.now(),
        **fields,
    )


def test_the_backend_is_djangos_with_our_json():
    from agentops.db.postgresql.base import DatabaseOperations

    assert connection.vendor == "postgresql"
    assert isinstance(connection.ops, DatabaseOperations)


def test_a_value_reads_back_as_json_dumps_would_have_stored_it(run):
    _span(run, attributes=VALUE).save()
    with write_transaction():
        hot.insert_many([_span(run, attributes=VALUE, output=["x", {"y": 1}])])

    expected = json.loads(json.dumps(VALUE))  # the integer key as a string
    stored = list(Span.objects.filter(run=run).values_list("attributes", flat=True))
    assert stored == [expected, expected]


def test_an_integer_past_64_bits_is_written_by_json_dumps(run):
    Run.objects.filter(pk=run.pk).update(tool_results=[{"big": 2**70}])

    run.refresh_from_db()
    assert run.tool_results == [{"big": 2**70}]


def test_what_json_cannot_write_raises_as_it_did(run):
    with pytest.raises(TypeError, match="Decimal is not JSON serializable"):
        Run.objects.filter(pk=run.pk).update(tool_results=[Decimal("1.5")])
