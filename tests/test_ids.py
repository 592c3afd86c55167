"""Span ids, trace ids and codes: valid for their consumers, unique, ordered by time."""

import re
import uuid
from unittest import mock

from agentops import ids

SPAN_ID = re.compile(r"^[0-9a-f]{16}$")
TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


def test_a_span_id_is_sixteen_hex_digits_and_never_zero():
    for _ in range(1000):
        span_id = ids.span_id()
        assert SPAN_ID.match(span_id)
        assert int(span_id, 16) != 0  # OTLP export parses it as a non-zero int


def test_a_trace_id_is_thirty_two_hex_digits_starting_with_a_span_id():
    for _ in range(1000):
        trace_id = ids.trace_id()
        assert TRACE_ID.match(trace_id)
        # The runtime's root span id is trace_id[:16]: it must be a valid span id too.
        assert SPAN_ID.match(trace_id[:16]) and int(trace_id[:16], 16) != 0


def test_span_ids_start_with_the_second_and_sort_by_it_within_a_lap():
    with mock.patch("agentops.ids.time.time", return_value=1_000_000.5):
        first = [ids.span_id() for _ in range(100)]
    with mock.patch("agentops.ids.time.time", return_value=1_000_001.5):
        second = [ids.span_id() for _ in range(100)]
    assert {s[:4] for s in first} == {f"{1_000_000 % 65536:04x}"}
    assert max(first) < min(second)


def test_span_ids_wrap_after_a_lap_of_65536_seconds():
    with mock.patch("agentops.ids.time.time", return_value=65536 * 400 + 3):
        assert ids.span_id()[:4] == "0003"


def test_ids_made_in_the_same_second_do_not_collide():
    with mock.patch("agentops.ids.time.time", return_value=1_000_000.0):
        span_ids = [ids.span_id() for _ in range(100_000)]
        trace_ids = [ids.trace_id() for _ in range(100_000)]
    assert len(set(span_ids)) == len(span_ids)
    assert len(set(trace_ids)) == len(trace_ids)
    assert len({t[:16] for t in trace_ids}) == len(trace_ids)


def test_a_code_is_a_version_7_uuid():
    code = ids.uuid7()
    assert isinstance(code, uuid.UUID)
    assert code.version == 7 and code.variant == uuid.RFC_4122
    assert uuid.UUID(str(code)) == code


def test_codes_start_with_the_millisecond_and_sort_by_it():
    with mock.patch("agentops.ids.time.time_ns", return_value=1_764_000_000_123_000_000):
        first = [ids.uuid7() for _ in range(1000)]
    with mock.patch("agentops.ids.time.time_ns", return_value=1_764_000_000_124_000_000):
        second = [ids.uuid7() for _ in range(1000)]
    assert {c.int >> 80 for c in first} == {1_764_000_000_123}
    assert max(first) < min(second)
    assert len(set(first)) == 1000  # 74 random bits within one millisecond


def test_tickets_and_runs_get_version_7_codes(db):
    from agentops.models import Run, Ticket

    ticket = Ticket.objects.create(customer_email="a@example.com", subject="s", body="b")
    run = Run.objects.create(ticket=ticket, trace_id=ids.trace_id())
    assert ticket.code.version == 7 and run.code.version == 7
