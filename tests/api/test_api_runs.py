"""GET /api/runs/<run_id>: a run's status, cost, steps, effects and pending actions."""

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from agentops.models import ApiToken, Effect, Run, Ticket
from approvals.models import PendingAction
from traces.models import Span

pytestmark = pytest.mark.django_db


def url(code) -> str:
    return f"/api/runs/{code}"


@pytest.fixture
def run() -> Run:
    ticket = Ticket.objects.create(
        customer_email="ada@example.com", subject="Refund", body="Broken kettle", external_id="t-1"
    )
    return Run.objects.create(
        ticket=ticket,
        status=Run.Status.AWAITING_APPROVAL,
        model="offline",
        trace_id="a" * 32,
        cost=Decimal("0.012300"),
    )


def add_span(run: Run, n: int, *, at, **fields) -> Span:
    values = {"kind": Span.Kind.MODEL, "name": "messages.create", "status": Span.Status.OK}
    return Span.objects.create(run=run, span_id=f"{n:016x}", started_at=at, **(values | fields))


def add_effect(run: Run, key: str, **fields) -> Effect:
    values = {"tool": "issue_refund", "status": Effect.Status.SUCCEEDED}
    return Effect.objects.create(
        run=run,
        ticket=run.ticket,
        idempotency_key=key,
        request={"order_id": "ORD-10023", "amount_cents": 1999},
        request_hash="0" * 64,
        **(values | fields),
    )


def test_it_shows_a_run_with_its_steps_effects_and_pending_actions_in_order(api, run):
    t0 = timezone.now()
    # Created out of order, and two at the same instant: order is (started_at, id).
    add_span(run, 3, at=t0 + timedelta(seconds=2), kind=Span.Kind.TOOL, name="lookup_order")
    add_span(
        run,
        1,
        at=t0,
        kind=Span.Kind.TOOL,
        name="issue_refund",
        status=Span.Status.ERROR,
        error_class=Span.ErrorClass.TRANSIENT,
        attempt=2,
    )
    add_span(run, 2, at=t0, kind=Span.Kind.POLICY, name="refund_threshold")
    add_effect(run, "refund:t-1:ORD-10023", status=Effect.Status.UNKNOWN)
    add_effect(run, "reply:t-1", tool="send_reply")
    action = PendingAction.objects.create(
        run=run, tool_use_id="toolu_1", tool="issue_refund", args={}, amount_cents=12000
    )

    response = api.get(url(run.code))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "id": str(run.code),
        "ticket_id": str(run.ticket.code),
        "status": "awaiting_approval",
        "model": "offline",
        "cost": "0.012300",
        "steps": [
            {
                "kind": "tool",
                "name": "issue_refund",
                "status": "error",
                "error_class": "transient",
                "attempt": 2,
            },
            {
                "kind": "policy",
                "name": "refund_threshold",
                "status": "ok",
                "error_class": "",
                "attempt": 1,
            },
            {
                "kind": "tool",
                "name": "lookup_order",
                "status": "ok",
                "error_class": "",
                "attempt": 1,
            },
        ],
        "effects": [
            {
                "tool": "issue_refund",
                "idempotency_key": "refund:t-1:ORD-10023",
                "status": "unknown",
            },
            {"tool": "send_reply", "idempotency_key": "reply:t-1", "status": "succeeded"},
        ],
        "pending_actions": [
            {
                "id": str(action.code),
                "tool": "issue_refund",
                "amount_cents": 12000,
                "status": "pending",
            }
        ],
    }


def test_it_shows_a_new_run_with_empty_lists(api, run):
    response = api.get(url(run.code))

    body = response.json()
    assert (body["steps"], body["effects"], body["pending_actions"]) == ([], [], [])


def test_it_shows_only_the_runs_own_rows(api, run):
    other_ticket = Ticket.objects.create(customer_email="b@example.com", subject="s", body="b")
    other = Run.objects.create(ticket=other_ticket, trace_id="b" * 32)
    add_span(other, 9, at=timezone.now())
    add_effect(other, "refund:other")

    body = api.get(url(run.code)).json()

    assert (body["steps"], body["effects"]) == ([], [])


def test_it_reads_a_run_in_a_fixed_number_of_queries(api, run, django_assert_num_queries):
    # The token was used a moment ago, so this request does not write last_used_at.
    ApiToken.objects.update(last_used_at=timezone.now())
    t0 = timezone.now()
    for n in range(30):
        add_span(run, n, at=t0 + timedelta(milliseconds=n))
        add_effect(run, f"key-{n}")
        PendingAction.objects.create(
            run=run, tool_use_id=f"toolu_{n}", tool="issue_refund", args={}
        )

    # token, run + ticket, spans, effects, pending actions
    with django_assert_num_queries(5):
        response = api.get(url(run.code))

    assert len(response.json()["steps"]) == 30


@pytest.mark.parametrize(
    "code", [uuid.uuid4(), "not-a-uuid", "1"], ids=["unknown", "malformed", "pk"]
)
def test_it_answers_404_json_for_a_run_that_does_not_exist(api, run, code):
    response = api.get(url(code))

    assert response.status_code == 404
    assert response.json() == {"error": "No run with this id."}


def test_it_refuses_a_request_without_a_token_without_saying_whether_the_run_exists(api, run):
    known = api.get(url(run.code), authorization=None)
    unknown = api.get(url(uuid.uuid4()), authorization=None)

    assert known.status_code == unknown.status_code == 401
    assert known.json() == unknown.json()
    assert known["WWW-Authenticate"].startswith("Bearer")


def test_it_refuses_a_revoked_token(api, run):
    ApiToken.objects.update(revoked_at=timezone.now())

    assert api.get(url(run.code)).status_code == 401


def test_it_refuses_other_methods_with_405(api, run):
    response = api.post_json(url(run.code), {})

    assert response.status_code == 405
    assert response["Allow"] == "GET"
