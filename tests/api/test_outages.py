"""Intake while the database or the broker is away: a 503, or a stored ticket; never a loss."""

from __future__ import annotations

import contextlib
import logging
import socket
from datetime import timedelta

import pytest
from django.db import OperationalError, connection
from django.utils import timezone

from agentops import services
from agentops.api import UNAVAILABLE_RETRY_AFTER_SECONDS
from agentops.celery import app as celery_app
from agentops.models import Run, Ticket
from agentops.runtime.sweeper import runs_sweep_stale

# The real one, before the autouse `enqueued_runs` fixture swaps it for a recorder.
REAL_ENQUEUE = services.run_enqueue_on_commit

URL = "/api/tickets"

pytestmark = pytest.mark.django_db(transaction=True)


def ticket(**overrides) -> dict:
    return {
        "customer_email": "ada@example.com",
        "subject": "Refund for ORD-10023",
        "body": "The kettle arrived broken. Please refund order ORD-10023.",
        "external_id": "helpdesk-outage-1",
    } | overrides


def _closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens: connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def database_unreachable():
    """Point Django's connection where no database is, as if the server went away."""
    saved = dict(connection.settings_dict)
    connection.close()
    if connection.vendor == "sqlite":
        connection.settings_dict["NAME"] = "/nonexistent/agentops/unreachable.sqlite3"
    else:
        connection.settings_dict.update(HOST="127.0.0.1", PORT=str(_closed_port()))
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)


def test_intake_answers_503_with_retry_after_while_the_database_is_unreachable(api):
    with database_unreachable():
        response = api.post_json(URL, ticket())

    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert response["Retry-After"] == str(UNAVAILABLE_RETRY_AFTER_SECONDS)
    assert "nothing was stored" in response.json()["error"]
    assert Ticket.objects.count() == 0


def test_the_client_sends_it_again_once_the_database_is_back_and_gets_one_ticket(
    api, enqueued_runs
):
    with database_unreachable():
        assert api.post_json(URL, ticket()).status_code == 503

    first = api.post_json(URL, ticket())
    again = api.post_json(URL, ticket())

    assert (first.status_code, again.status_code) == (201, 200)
    assert Ticket.objects.count() == Run.objects.count() == 1
    assert enqueued_runs == [Run.objects.get().pk]


def test_run_status_answers_503_while_the_database_is_unreachable(api):
    with database_unreachable():
        response = api.get("/api/runs/00000000-0000-0000-0000-000000000000")

    assert response.status_code == 503
    assert response["Retry-After"] == str(UNAVAILABLE_RETRY_AFTER_SECONDS)


def test_a_database_lost_between_the_ticket_and_its_run_leaves_nothing_half_written(
    api, monkeypatch, enqueued_runs
):
    def connection_lost(**fields):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(Run.objects, "create", connection_lost)

    response = api.post_json(URL, ticket())

    assert response.status_code == 503
    assert Ticket.objects.count() == 0  # the ticket's INSERT was rolled back with it
    assert enqueued_runs == []


@pytest.fixture
def broker_unreachable(monkeypatch):
    """The real enqueue, towards a Redis broker where nothing listens."""
    monkeypatch.setattr(services, "run_enqueue_on_commit", REAL_ENQUEUE)
    url = f"redis://127.0.0.1:{_closed_port()}/0"
    conf = celery_app.conf
    saved = {key: conf[key] for key in ("broker_url", "broker_transport_options")}
    conf.update(broker_url=url, broker_transport_options={})
    monkeypatch.setenv("CELERY_BROKER_URL", url)  # Celery reads it before its own setting
    # Connections and producers are pooled per app: drop them, before and after.
    celery_app._pool = celery_app.amqp._producer_pool = None
    yield
    conf.update(saved)
    celery_app._pool = celery_app.amqp._producer_pool = None


def test_a_ticket_is_stored_when_the_broker_is_unreachable_and_the_sweeper_takes_it(
    api, broker_unreachable, settings, caplog
):
    with caplog.at_level(logging.WARNING, logger="agentops.services"):
        response = api.post_json(URL, ticket())

    assert response.status_code == 201
    run = Run.objects.get()
    assert response.json()["run_id"] == str(run.code)
    assert run.status == Run.Status.QUEUED
    assert f"run {run.pk} is stored and left for the sweeper" in caplog.text

    # Not yet queued too long: the sweeper leaves it; once it is, the sweeper enqueues it.
    assert runs_sweep_stale() == []
    Run.objects.filter(pk=run.pk).update(
        updated_at=timezone.now() - timedelta(seconds=settings.RUN_STALE_SECONDS + 1)
    )
    assert runs_sweep_stale() == [run.pk]
