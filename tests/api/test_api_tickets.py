"""POST /api/tickets: intake for other systems, idempotent on external_id."""

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from agentops.api import MAX_REQUEST_BYTES
from agentops.forms import TICKET_BODY_MAX_CHARS
from agentops.models import ApiToken, Run, Ticket

URL = "/api/tickets"

pytestmark = pytest.mark.django_db


def ticket(**overrides) -> dict:
    return {
        "customer_email": "ada@example.com",
        "subject": "Refund for ORD-10023",
        "body": "The kettle arrived broken. Please refund order ORD-10023.",
        "external_id": "helpdesk-4711",
    } | overrides


def test_it_stores_a_ticket_and_its_run_and_enqueues_the_run(api, enqueued_runs):
    response = api.post_json(URL, ticket())

    assert response.status_code == 201
    run = Run.objects.select_related("ticket").get()
    assert response.json() == {
        "ticket_id": str(run.ticket.code),
        "run_id": str(run.code),
        "status": "queued",
    }
    assert run.ticket.customer_email == "ada@example.com"
    assert run.ticket.external_id == "helpdesk-4711"
    assert run.ticket.source == Ticket.Source.API
    assert enqueued_runs == [run.pk]


def test_it_answers_a_repeated_external_id_with_the_first_ids_and_no_second_run(api, enqueued_runs):
    first = api.post_json(URL, ticket())
    again = api.post_json(URL, ticket())

    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json() == first.json()
    assert Ticket.objects.count() == 1
    assert Run.objects.count() == 1
    assert enqueued_runs == [Run.objects.get().pk]


def test_it_keeps_the_first_ticket_when_a_repeat_carries_different_text(api):
    # The external id is the identity of the ticket: a retry that re-renders the
    # text differently is still the same ticket, never a second run.
    first = api.post_json(URL, ticket())
    again = api.post_json(URL, ticket(body="Something else entirely"))

    assert again.status_code == 200
    assert again.json()["run_id"] == first.json()["run_id"]
    assert Ticket.objects.get().body.startswith("The kettle arrived broken")


def test_it_makes_separate_runs_for_separate_external_ids(api, enqueued_runs):
    api.post_json(URL, ticket(external_id="a"))
    api.post_json(URL, ticket(external_id="b"))

    assert Run.objects.count() == 2
    assert len(enqueued_runs) == 2


def test_it_strips_surrounding_whitespace(api):
    api.post_json(URL, ticket(customer_email="  ada@example.com ", subject=" Hi "))

    stored = Ticket.objects.get()
    assert (stored.customer_email, stored.subject) == ("ada@example.com", "Hi")


def test_it_accepts_the_longest_valid_ticket_even_when_every_character_is_escaped(api):
    # 20,000 emoji sent as \ud83d\udce6 surrogate pairs: the largest body the
    # fields allow must never be refused for its size in bytes.
    body = "\U0001f4e6" * TICKET_BODY_MAX_CHARS
    payload = json.dumps(ticket(body=body), ensure_ascii=True)
    assert len(payload) < MAX_REQUEST_BYTES

    response = api.post_json(URL, payload)

    assert response.status_code == 201
    assert Ticket.objects.get().body == body


# --- field errors: 400 with a message per field, nothing stored -----------------


@pytest.mark.parametrize(
    ("payload", "field", "message"),
    [
        (ticket(customer_email="not-an-email"), "customer_email", "Enter a valid email address."),
        (ticket(customer_email=""), "customer_email", "This field is required."),
        (
            ticket(customer_email="a" * 250 + "@example.com"),
            "customer_email",
            "Ensure this value has at most 254 characters (it has 262).",
        ),
        (ticket(subject="x" * 301), "subject", "at most 300 characters (it has 301)"),
        (ticket(body="   "), "body", "This field is required."),
        (
            ticket(body="x" * (TICKET_BODY_MAX_CHARS + 1)),
            "body",
            "at most 20000 characters (it has 20001)",
        ),
        (ticket(external_id="e" * 201), "external_id", "at most 200 characters (it has 201)"),
        (ticket(external_id=None), "external_id", "This field is required."),
        (ticket(subject=42), "subject", "Must be a string."),
        (ticket(body=["a", "list"]), "body", "Must be a string."),
        (ticket(body="nul \x00 byte"), "body", "Null characters are not allowed."),
        (ticket(priority="high"), "priority", "Unknown field."),
    ],
    ids=[
        "bad-email",
        "empty-email",
        "long-email",
        "long-subject",
        "blank-body",
        "long-body",
        "long-external-id",
        "null-external-id",
        "number-subject",
        "list-body",
        "nul-in-body",
        "unknown-field",
    ],
)
def test_it_refuses_a_bad_field_with_its_message_and_stores_nothing(
    api, enqueued_runs, payload, field, message
):
    response = api.post_json(URL, payload)

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert list(errors) == [field]
    assert any(message in text for text in errors[field]), errors
    assert Ticket.objects.count() == 0
    assert enqueued_runs == []


def test_it_names_every_missing_field_at_once(api):
    response = api.post_json(URL, {})

    assert response.status_code == 400
    assert response.json() == {
        "errors": {
            name: ["This field is required."]
            for name in ("customer_email", "subject", "body", "external_id")
        }
    }


def test_it_reports_a_wrong_type_once_not_also_as_missing(api):
    response = api.post_json(URL, ticket(customer_email=7))

    assert response.json() == {"errors": {"customer_email": ["Must be a string."]}}


# --- malformed requests -------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"subject": ', "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('"a string"', "must be a JSON object"),
        (b"\xff\xfe{}", "not valid UTF-8"),
        ("  ", "not valid JSON"),
    ],
    ids=["truncated", "array", "string", "not-utf8", "empty"],
)
def test_it_refuses_a_body_that_is_not_a_json_object(api, enqueued_runs, body, message):
    response = api.post_json(URL, body)

    assert response.status_code == 400
    assert message in response.json()["error"]
    assert Ticket.objects.count() == 0
    assert enqueued_runs == []


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json; charset=latin-1",
    ],
)
def test_it_refuses_anything_but_utf8_json_with_415(api, enqueued_runs, content_type):
    response = api.post_json(URL, ticket(), content_type=content_type)

    assert response.status_code == 415
    assert "error" in response.json()
    assert Ticket.objects.count() == 0
    assert enqueued_runs == []


def test_it_accepts_json_that_names_its_utf8_charset(api):
    response = api.post_json(URL, ticket(), content_type="application/json; charset=UTF-8")

    assert response.status_code == 201


def test_it_refuses_a_body_over_the_limit_with_413(api, enqueued_runs):
    too_big = json.dumps(ticket(body="x" * MAX_REQUEST_BYTES))

    response = api.post_json(URL, too_big)

    assert response.status_code == 413
    assert "limited to" in response.json()["error"]
    assert Ticket.objects.count() == 0
    assert enqueued_runs == []


def test_it_refuses_a_declared_length_over_the_limit_without_reading_the_body(api):
    # Content-Length alone decides: the client is told before it sends megabytes.
    response = api.client.post(
        URL,
        json.dumps(ticket()),
        content_type="application/json",
        headers={"Authorization": f"Bearer {api.token}"},
        CONTENT_LENGTH=str(MAX_REQUEST_BYTES + 1),
    )

    assert response.status_code == 413
    assert Ticket.objects.count() == 0


def test_it_refuses_other_methods_with_405(api):
    for response in (api.get(URL), api.put(URL)):
        assert response.status_code == 405
        assert response["Allow"] == "POST"
    assert Ticket.objects.count() == 0


# --- tokens -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("authorization", "invalid"),
    [
        (None, False),
        ("", False),
        ("Basic dXNlcjpwYXNz", False),
        ("Bearer", False),
        ("Bearer aot_not-a-real-token", True),
    ],
    ids=["missing", "empty", "basic", "bearer-without-token", "unknown-token"],
)
def test_it_refuses_a_request_without_a_valid_token_with_401(
    api, enqueued_runs, authorization, invalid
):
    response = api.post_json(URL, ticket(), authorization=authorization)

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert ('error="invalid_token"' in response["WWW-Authenticate"]) is invalid
    assert "error" in response.json()
    assert Ticket.objects.count() == 0
    assert enqueued_runs == []


def test_it_refuses_a_revoked_token(api, enqueued_runs):
    ApiToken.objects.update(revoked_at=timezone.now())

    response = api.post_json(URL, ticket())

    assert response.status_code == 401
    assert 'error="invalid_token"' in response["WWW-Authenticate"]
    assert Ticket.objects.count() == 0
    assert enqueued_runs == []


def test_it_checks_the_token_before_anything_else_about_the_request(api):
    response = api.post_json(URL, "not json", content_type="text/plain", authorization=None)

    assert response.status_code == 401


def test_it_accepts_the_scheme_in_any_case(api):
    response = api.post_json(URL, ticket(), authorization=f"bearer {api.token}")

    assert response.status_code == 201


def test_it_needs_no_session_and_no_csrf_token(api_token):
    # Other systems hold a token, not a cookie, and CSRF is an attack on cookies.
    strict = Client(enforce_csrf_checks=True)

    response = strict.post(
        URL,
        ticket(),
        content_type="application/json",
        headers={"Authorization": f"Bearer {api_token}"},
    )

    assert response.status_code == 201


def test_it_notes_when_a_token_was_last_used_at_most_once_a_minute(api):
    token = ApiToken.objects.get()
    assert token.last_used_at is None

    api.post_json(URL, ticket(external_id="1"))
    token.refresh_from_db()
    first_use = token.last_used_at
    assert first_use is not None

    api.post_json(URL, ticket(external_id="2"))
    token.refresh_from_db()
    assert token.last_used_at == first_use

    two_minutes_earlier = first_use - timedelta(minutes=2)
    ApiToken.objects.update(last_used_at=two_minutes_earlier)
    api.post_json(URL, ticket(external_id="3"))
    token.refresh_from_db()
    assert token.last_used_at > two_minutes_earlier
