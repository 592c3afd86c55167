"""The run's conversation, kept as one row per turn (agentops.models.Turn, issue 8)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agentops import ids
from agentops.models import Run, Ticket, Turn

pytestmark = pytest.mark.django_db

HELLO = {"role": "user", "content": "My order arrived broken."}
ANSWER = {"role": "assistant", "content": [{"type": "text", "text": "Sorry to hear that."}]}


@pytest.fixture
def ticket():
    return Ticket.objects.create(customer_email="ada@example.com", subject="Broken", body="b")


def _run(ticket, **fields) -> Run:
    return Run.objects.create(ticket=ticket, trace_id=ids.trace_id(), **fields)


def _stored(run: Run) -> list[tuple[int, dict]]:
    return list(Turn.objects.filter(run=run).order_by("seq").values_list("seq", "message"))


def test_a_run_made_with_a_conversation_stores_one_row_per_turn(ticket):
    run = _run(ticket, messages=[HELLO, ANSWER])

    assert _stored(run) == [(0, HELLO), (1, ANSWER)]
    assert Run.objects.get(pk=run.pk).messages == [HELLO, ANSWER]


def test_a_run_without_turns_has_an_empty_conversation_and_writes_none(ticket):
    run = _run(ticket)

    assert run.messages == [] and Run.objects.get(pk=run.pk).messages == []
    assert not Turn.objects.exists()


def test_saving_again_writes_only_the_new_turns(ticket):
    run = _run(ticket, messages=[HELLO])
    run.messages = [*run.messages, ANSWER]

    with CaptureQueriesContext(connection) as queries:
        run.save()

    inserts = [q["sql"] for q in queries if q["sql"].startswith('INSERT INTO "agentops_turn"')]
    assert len(inserts) == 1
    assert _stored(run) == [(0, HELLO), (1, ANSWER)]
    run.save()  # nothing new: no turn is written twice
    assert Turn.objects.filter(run=run).count() == 2


def test_a_conversation_only_grows(ticket):
    run = _run(ticket, messages=[HELLO, ANSWER])

    with pytest.raises(ValueError, match="only grows: 2 turns are saved, 1 given"):
        run.messages = [HELLO]
    loaded = Run.objects.get(pk=run.pk)
    with pytest.raises(ValueError, match="only grows"):
        loaded.messages = []
    assert _stored(run) == [(0, HELLO), (1, ANSWER)]


def test_a_conversation_is_read_once_per_instance_and_again_after_a_refresh(ticket):
    run = _run(ticket, messages=[HELLO])
    loaded = Run.objects.get(pk=run.pk)

    with CaptureQueriesContext(connection) as queries:
        assert loaded.messages == [HELLO]
        assert loaded.messages == [HELLO]
    assert len(queries) == 1
    Turn.objects.create(run=run, seq=1, message=ANSWER)  # another process's step
    loaded.refresh_from_db()
    assert loaded.messages == [HELLO, ANSWER]


def test_prefetched_turns_serve_the_conversations_of_many_runs(ticket):
    for _ in range(3):
        _run(ticket, messages=[HELLO, ANSWER])

    with CaptureQueriesContext(connection) as queries:
        runs = list(Run.objects.prefetch_related("turns"))
        conversations = [run.messages for run in runs]
    assert conversations == [[HELLO, ANSWER]] * 3
    assert len(queries) == 2  # the runs, then every run's turns


def test_deleting_a_run_deletes_its_turns(ticket):
    run = _run(ticket, messages=[HELLO, ANSWER])

    run.delete()

    assert not Turn.objects.exists()


def test_two_turns_of_a_run_cannot_share_a_place(ticket):
    from django.db import IntegrityError, transaction

    run = _run(ticket, messages=[HELLO])
    with pytest.raises(IntegrityError), transaction.atomic():
        Turn.objects.create(run=run, seq=0, message=ANSWER)
    assert _stored(run) == [(0, HELLO)]
