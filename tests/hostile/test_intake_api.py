"""The intake API under hostile requests: a clear JSON 4xx, and nothing stored half-way.

Whatever the body, headers, method or token, the answer is JSON; a ticket (and its
run, and its enqueue) exists only after a 201, and every 400 names the fields it
refuses.
"""

from __future__ import annotations

import json
import os

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from hypothesis import example, given
from hypothesis import strategies as st

from agentops.api import MAX_REQUEST_BYTES
from agentops.forms import TicketSubmitForm
from agentops.models import ApiToken, Run, Ticket
from tests.hostile import strategies as hs
from tests.hostile.conftest import example_transaction

pytestmark = pytest.mark.django_db

URL = "/api/tickets"
FIELDS = set(TicketSubmitForm.base_fields)


def valid_ticket(**overrides) -> dict:
    return {
        "customer_email": "ada@example.com",
        "subject": "Refund ORD-10023",
        "body": "The kettle arrived broken.",
        "external_id": "helpdesk-1",
    } | overrides


def assert_json_error(response, status: int | set[int]) -> dict:
    statuses = status if isinstance(status, set) else {status}
    assert response.status_code in statuses, (response.status_code, response.content[:300])
    assert response["Content-Type"] == "application/json"
    data = response.json()
    assert isinstance(data, dict) and (data.get("error") or data.get("errors")), data
    return data


def assert_nothing_stored(enqueued_before: int, enqueued_runs) -> None:
    assert Ticket.objects.count() == 0
    assert Run.objects.count() == 0
    assert len(enqueued_runs) == enqueued_before


# --- the body: any JSON value, any field values ------------------------------------

field_values = st.one_of(
    st.sampled_from(["ada@example.com", "Refund please", "x" * 20_001, "a" * 301]),
    hs.texts,
    hs.json_values,
)
payloads = st.one_of(
    # The real fields, each with any value, sometimes missing, plus unknown keys.
    st.builds(
        lambda fields, extra: fields | extra,
        st.fixed_dictionaries({}, optional=dict.fromkeys(FIELDS, field_values)),
        st.dictionaries(st.text(max_size=10), hs.json_values, max_size=2),
    ),
    hs.json_values,
)


@given(payload=payloads)
@example(payload=valid_ticket(subject="\ud800"))
@example(payload=valid_ticket(body="a lone low surrogate \udfff"))
@example(payload=valid_ticket(external_id="\ud83d"))
@example(payload=valid_ticket(customer_email="ad\x00a@example.com"))
@example(payload=valid_ticket(body="\u202eevil\u202c \U000e0072\U000e0065"))
@example(payload=valid_ticket(body=1e308, subject=True))
@example(payload=dict.fromkeys(FIELDS, "x" * 100_000))
def test_any_json_body_is_stored_whole_or_refused_naming_its_fields(api, enqueued_runs, payload):
    with example_transaction():
        before = len(enqueued_runs)
        body = json.dumps(payload)
        response = api.post_json(URL, body)

        if len(body.encode()) > MAX_REQUEST_BYTES:
            assert_json_error(response, 413)
            assert_nothing_stored(before, enqueued_runs)
            return
        if response.status_code == 201:
            ticket = Ticket.objects.get()
            assert {f: getattr(ticket, f) for f in FIELDS} == {
                f: payload[f].strip() for f in FIELDS
            }
            assert Run.objects.get().ticket == ticket
            assert enqueued_runs[before:] == [Run.objects.get().pk]
            return
        if not isinstance(payload, dict):
            assert "must be a JSON object" in assert_json_error(response, 400)["error"]
        else:
            errors = assert_json_error(response, 400)["errors"]
            assert set(errors) <= FIELDS | set(payload)
            assert all(isinstance(m, str) and m for ms in errors.values() for m in ms)
        assert_nothing_stored(before, enqueued_runs)


# Not empty: Django's test client drops the Content-Type of an empty body (a 415 then).
@given(body=st.binary(min_size=1, max_size=300))
@example(body=b"\xef\xbb\xbf{}")  # a UTF-8 byte order mark
@example(body=b'{"a": "\xed\xa0\x80"}')  # a surrogate encoded in UTF-8: not valid UTF-8
@example(body=b"[" * 5000 + b"]" * 5000)  # nested deeper than the parser recurses
@example(body=b'{"body": 1' + b"0" * 5000 + b"}")  # an integer longer than Python parses
@example(body=b"NaN")
def test_any_bytes_are_refused_with_a_json_400_and_nothing_stored(api, enqueued_runs, body):
    with example_transaction():
        before = len(enqueued_runs)
        response = api.post_json(URL, body)

        assert_json_error(response, 400)
        assert_nothing_stored(before, enqueued_runs)


@given(
    content_type=st.one_of(
        st.sampled_from(
            [
                "",
                "application/jsonx",
                "text/json",
                "application/json; charset=utf-16",
                "application/json; charset=",
                "application/x-www-form-urlencoded",
                "multipart/form-data",
                "APPLICATION/JSON; charset=latin-1",
            ]
        ),
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
    )
)
def test_any_other_content_type_is_refused_with_415(api, enqueued_runs, content_type):
    with example_transaction():
        before = len(enqueued_runs)
        response = api.post_json(URL, valid_ticket(), content_type=content_type)

        if response.status_code == 201:
            # Only JSON in UTF-8 is taken, however its type is spelled.
            main, _, params = content_type.partition(";")
            assert main.strip().lower() == "application/json"
            assert params.strip().lower() in {"", "charset=utf-8", "charset=utf8"}
            return
        assert_json_error(response, 415)
        assert_nothing_stored(before, enqueued_runs)


# --- size ---------------------------------------------------------------------------


@pytest.mark.parametrize("declared", [None, MAX_REQUEST_BYTES + 1, 10**12])
def test_an_oversize_body_is_refused_with_413(api, enqueued_runs, declared):
    body = json.dumps(valid_ticket(body="x" * (MAX_REQUEST_BYTES + 10)))
    extra = {} if declared is None else {"CONTENT_LENGTH": str(declared)}
    response = api.client.post(
        URL,
        body,
        content_type="application/json",
        headers={"Authorization": f"Bearer {api.token}"},
        **extra,
    )

    assert "limited to" in assert_json_error(response, 413)["error"]
    assert_nothing_stored(0, enqueued_runs)


@pytest.mark.parametrize("declared", ["abc", "-1", "1e3", ""])
def test_a_malformed_content_length_is_a_json_4xx(api, enqueued_runs, declared):
    response = api.client.post(
        URL,
        json.dumps(valid_ticket()),
        content_type="application/json",
        headers={"Authorization": f"Bearer {api.token}"},
        CONTENT_LENGTH=declared,
    )

    assert_json_error(response, 400)
    assert_nothing_stored(0, enqueued_runs)


# --- tokens and methods ----------------------------------------------------------------


@given(
    authorization=st.one_of(
        st.none(),
        st.sampled_from(["", "Bearer", "Bearer ", "bearer  ", "Token abc", "Bearer a b c"]),
        st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=255), max_size=80),
        st.text(max_size=40).map(lambda t: f"Bearer {t}"),
        st.text(max_size=2000, alphabet="ab").map(lambda t: f"Bearer aot_{t}"),
    )
)
def test_a_missing_or_wrong_token_is_a_json_401_and_nothing_stored(
    api, enqueued_runs, authorization
):
    with example_transaction():
        before = len(enqueued_runs)
        response = api.post_json(URL, valid_ticket(), authorization=authorization)

        assert_json_error(response, 401)
        assert response["WWW-Authenticate"].startswith('Bearer realm="agentops"')
        assert_nothing_stored(before, enqueued_runs)


def test_a_revoked_token_is_refused_even_with_a_perfect_request(api, enqueued_runs):
    ApiToken.objects.update(revoked_at=timezone.now())

    response = api.post_json(URL, valid_ticket())

    assert "revoked" in assert_json_error(response, 401)["error"]
    assert_nothing_stored(0, enqueued_runs)


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete", "options"])
def test_other_methods_on_tickets_are_a_json_405(api, enqueued_runs, method):
    response = getattr(api.client, method)(URL, headers={"Authorization": f"Bearer {api.token}"})

    assert "POST" in assert_json_error(response, 405)["error"]
    assert response["Allow"] == "POST"
    assert_nothing_stored(0, enqueued_runs)


@pytest.mark.parametrize("method", ["post", "put", "delete"])
def test_other_methods_on_a_run_are_a_json_405(api, method):
    response = getattr(api.client, method)(
        "/api/runs/00000000-0000-0000-0000-000000000000",
        headers={"Authorization": f"Bearer {api.token}"},
    )

    assert_json_error(response, 405)
    assert response["Allow"] in {"GET", "GET, HEAD"}


@given(
    run_id=st.one_of(
        st.uuids().map(str),
        st.text(
            alphabet=st.characters(
                min_codepoint=33, max_codepoint=0x2FFF, exclude_characters="/?#%"
            ),
            max_size=60,
        ),
        st.sampled_from(["0" * 5000, "{00000000-0000-0000-0000-000000000000}", "%00", "%2F%2E%2E"]),
    )
)
def test_an_unknown_or_malformed_run_id_is_a_json_404(api, run_id):
    response = api.get(f"/api/runs/{run_id}")

    assert_json_error(response, 404)


@pytest.mark.parametrize(
    "path", ["/api/", "/api/tickets/", "/api/ticket", "/api/runs/", "/api/runs/x/y", "/api/%00"]
)
@pytest.mark.parametrize("method", ["get", "post"])
def test_an_unknown_api_path_is_a_json_404_not_a_login_page(api, enqueued_runs, path, method):
    response = getattr(api.client, method)(path, headers={"Authorization": f"Bearer {api.token}"})

    assert "No such API endpoint" in assert_json_error(response, 404)["error"]
    assert_nothing_stored(0, enqueued_runs)


# --- the other intake: the submit_ticket command -------------------------------------


@pytest.mark.parametrize("field", ["email", "subject", "body"])
def test_the_command_refuses_arguments_that_were_not_utf8(enqueued_runs, field):
    # A shell passes bytes; Python turns those that are not UTF-8 into lone surrogates.
    options = {"email": "ada@example.com", "subject": "Hi", "body": "Refund ORD-1"}
    options[field] = os.fsdecode(b"caf\xe9")

    with pytest.raises(CommandError, match=f"--{field} is not valid UTF-8"):
        call_command("submit_ticket", **options)
    assert_nothing_stored(0, enqueued_runs)
