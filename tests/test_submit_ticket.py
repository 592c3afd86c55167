import pytest
from django.core.management import CommandError, call_command

from agentops.models import Run, Ticket


@pytest.mark.django_db
def test_it_submits_a_ticket_and_enqueues_its_run(
    capsys, enqueued_runs, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        call_command("submit_ticket", email="ada@example.com", subject="Hi", body="Refund ORD-1")

    run = Run.objects.get()
    assert run.ticket.source == Ticket.Source.COMMAND
    assert enqueued_runs == [run.pk]
    assert str(run.code) in capsys.readouterr().out


@pytest.mark.django_db
def test_the_same_external_id_does_not_make_a_second_run(capsys):
    for _ in range(2):
        call_command(
            "submit_ticket", email="a@example.com", subject="s", body="b", external_id="ext-1"
        )
    assert Run.objects.count() == 1
    assert "Already submitted" in capsys.readouterr().out


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"email": "not-an-email", "subject": "s", "body": "b"}, "--email"),
        ({"email": "a@example.com", "subject": "  ", "body": "b"}, "--subject must not be empty"),
        ({"email": "a@example.com", "subject": "s", "body": "x" * 20_001}, "--body is longer"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_stored(options, message):
    with pytest.raises(CommandError, match=message):
        call_command("submit_ticket", **options)
    assert not Ticket.objects.exists()
