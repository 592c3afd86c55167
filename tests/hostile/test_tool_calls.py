"""Random and malformed model output, through the real Runner on database-backed orders.

Whatever the model sends, the run ends in a state with a reason (or parks for a
person), never in an unexpected error; every tool call is answered; and nothing is
executed unless it was a valid call that policy lets run on its own. Executions are
counted where they happen: refunds at the simulated provider (ProviderRefund rows)
and in the effect ledger, replies in the outbox.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.conf import settings
from django.core import mail
from hypothesis import example, given
from hypothesis import strategies as st

from agentops.models import Effect, Run
from agentops.runtime.loop import run_advance
from agentops.shop.models import Order
from agentops.simgateway.models import ProviderRefund
from approvals.models import PendingAction
from tests.hostile import strategies as hs
from tests.hostile.conftest import example_transaction

pytestmark = pytest.mark.django_db

OWN_TOTAL = 7500  # above the 5000 approval threshold, so both sides of it are reachable
FINAL = {Run.Status.RESOLVED, Run.Status.ESCALATED, Run.Status.FAILED}


@dataclass
class World:
    own: Order
    other: Order
    run: Run

    @property
    def ids(self) -> dict[str, str]:
        return {
            "@own": self.own.order_id,
            "@own_lower": self.own.order_id.lower(),
            "@own_tracking": self.own.tracking_number,
            "@other": self.other.order_id,
            "@other_tracking": self.other.tracking_number,
            "@missing": "ORD-99999999",
        }


@pytest.fixture
def world(make_order, submit):
    """make() builds the example's shop and ticket: call it inside example_transaction."""

    def make() -> World:
        own = make_order(
            email="ada@example.com", total_cents=OWN_TOTAL, tracking="1ZOWN0000000000001"
        )
        other = make_order(
            email="mallory@example.com", total_cents=900_000, tracking="1ZOTH0000000000002"
        )
        run = submit("My kettle arrived broken, please refund it.", email="ada@example.com")
        return World(own=own, other=other, run=run)

    return make


def _advance(world: World) -> Run:
    run_advance(run_id=world.run.pk, worker="hostile-worker")
    world.run.refresh_from_db()
    return world.run


def _tool_results(run: Run) -> list[dict]:
    out = []
    for message in run.messages:
        if message["role"] == "user" and isinstance(message["content"], list):
            out.extend(b for b in message["content"] if b.get("type") == "tool_result")
    return out + list(run.tool_results)


def assert_ended_with_a_reason(run: Run) -> None:
    assert run.status in FINAL | {Run.Status.AWAITING_APPROVAL}, run.status
    # The hostile model never raises, so nothing may fail the run: a failure here is
    # an exception the runtime did not expect.
    assert run.status != Run.Status.FAILED, run.outcome_reason
    if run.status == Run.Status.ESCALATED:
        assert run.outcome_reason


def assert_every_tool_call_answered(run: Run) -> None:
    """The Messages API contract: each tool_use id is a unique string, answered exactly once
    in the next user message."""
    messages = run.messages
    seen: set[str] = set()
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        ids = [b["id"] for b in message["content"] if b.get("type") == "tool_use"]
        assert all(isinstance(x, str) and x for x in ids), ids
        assert len(set(ids)) == len(ids) and not seen & set(ids), ids
        seen |= set(ids)
        if i + 1 < len(messages):
            following = messages[i + 1]["content"]
            answered = [
                b["tool_use_id"]
                for b in (following if isinstance(following, list) else [])
                if b.get("type") == "tool_result"
            ]
            assert sorted(answered) == sorted(ids), (ids, answered)


def _valid_refund_calls(world: World, sent: list) -> list[dict]:
    """The refund calls among those sent that were well-formed for the customer's own order."""
    own = {world.own.order_id, world.own.tracking_number}
    calls = []
    for content, _stop in sent:
        for block in content:
            if not (isinstance(block, dict) and block.get("type") == "tool_use"):
                continue
            args = block.get("input")
            if block.get("name") != "issue_refund" or not isinstance(args, dict):
                continue
            if set(args) != {"order_id", "amount_cents", "reason"}:
                continue
            if not (isinstance(args["order_id"], str) and args["order_id"].strip().upper() in own):
                continue
            if type(args["amount_cents"]) is not int or not isinstance(args["reason"], str):
                continue
            calls.append(args)
    return calls


def assert_only_valid_allowed_calls_executed(world: World, sent: list) -> None:
    threshold = settings.DEFAULT_APPROVAL_THRESHOLD_CENTS
    refunds = list(ProviderRefund.objects.all())
    ledger = Effect.objects.filter(tool="issue_refund", status=Effect.Status.SUCCEEDED)
    assert len(refunds) == ledger.count()
    # One refund per ticket and order (the ledger key), and never more than was paid.
    assert len(refunds) <= 1
    valid_amounts = {c["amount_cents"] for c in _valid_refund_calls(world, sent)}
    for refund in refunds:
        assert refund.payment_ref == world.own.payment_ref
        assert 0 < refund.amount_cents <= threshold
        assert refund.amount_cents in valid_amounts
    for action in PendingAction.objects.all():
        assert action.args["order_id"] == world.own.order_id
        assert threshold < action.amount_cents <= OWN_TOTAL
        assert action.amount_cents in valid_amounts
    replies = Effect.objects.filter(tool="send_reply", status=Effect.Status.SUCCEEDED).count()
    assert len(mail.outbox) == replies <= 1


@given(sent=hs.responses)
@example(sent=[([{"type": "tool_use", "id": 7, "name": "lookup_order", "input": {}}], "tool_use")])
@example(
    sent=[
        (
            [
                {"type": "tool_use", "id": "toolu_duplicate", "name": "lookup_order", "input": {}},
                {"type": "tool_use", "id": "toolu_duplicate", "name": "escalate", "input": {}},
            ],
            "tool_use",
        )
    ]
)
@example(sent=[([{"type": "text", "text": "I've refunded your order in full."}], "end_turn")])
@example(
    sent=[
        (
            [
                {
                    "type": "tool_use",
                    "id": f"toolu_many_{n}",
                    "name": "issue_refund",
                    "input": {"order_id": "@own", "amount_cents": 100 + n, "reason": "part"},
                }
                for n in range(30)
            ],
            "tool_use",
        )
    ]
)
@example(sent=[([{"type": "text", "text": 42}], "refusal")])
@example(sent=[([{"type": "text", "text": "I will not\x00 \ud800"}], "refusal")])
@example(sent=[([{"type": "text", "text": ["a"]}, {"type": "text", "text": "b"}], "end_turn")])
@example(
    sent=[
        (
            [
                {"type": "text", "text": {"x": 1}},
                {
                    "type": "tool_use",
                    "id": "toolu_big",
                    "name": "issue_refund",
                    "input": {"order_id": "@own", "amount_cents": 6000, "reason": "x"},
                },
            ],
            "tool_use",
        )
    ]
)
@example(
    sent=[
        (
            [
                {
                    "type": "tool_use",
                    "id": "toolu_" + "a" * 300,
                    "name": "issue_refund",
                    "input": {"order_id": "@own", "amount_cents": 6000, "reason": "x"},
                }
            ],
            "tool_use",
        )
    ]
)
@example(
    sent=[
        (
            [
                {
                    "type": "tool_use",
                    "id": "toolu_nul",
                    "name": "issue_refund",
                    "input": {"order_id": "@own", "amount_cents": 100, "reason": "bad\x00"},
                }
            ],
            "tool_use",
        ),
        ([{"type": "tool_use", "id": "r", "name": "send_reply", "input": {"body": "\ud800"}}], ""),
    ]
)
def test_whatever_the_model_sends_only_valid_allowed_calls_execute(world, hostile_model, sent):
    with example_transaction():
        w = world()
        sent = hs.resolve_markers(sent, w.ids)
        hostile_model(sent)

        run = _advance(w)

        assert_ended_with_a_reason(run)
        assert_every_tool_call_answered(run)
        assert_only_valid_allowed_calls_executed(w, sent)


# --- one refund call, one thing wrong with it: the exact outcome is known ---------------

INVALID_ORDER_REFS = st.one_of(
    st.sampled_from(["@other", "@other_tracking", "@missing", "\u202e@own", "@own\u200b"]),
    st.sampled_from(["@own\x00", "\uff2f\uff32\uff24-20001", "ORD-" + "9" * 70, "", "  "]),
    st.integers(),
    st.none(),
    st.lists(st.just("@own"), min_size=1, max_size=2),
)
INVALID_AMOUNTS = st.one_of(
    st.integers(max_value=0),
    st.integers(min_value=OWN_TOTAL + 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["100", "1e3", True, False, None, [100]]),
)
INVALID_REASONS = st.one_of(
    st.sampled_from(["", "   ", "\n", "x" * 301]), st.integers(), st.none(), st.just(["damaged"])
)
VALID_ORDER_REFS = st.sampled_from(["@own", "@own_lower", "@own_tracking", " @own\n"])


@st.composite
def refund_calls(draw) -> tuple[dict, str]:
    """A refund call with at most one thing wrong, and what must come of it."""
    args = {
        "order_id": draw(VALID_ORDER_REFS),
        "amount_cents": draw(st.integers(min_value=1, max_value=OWN_TOTAL)),
        "reason": draw(
            st.sampled_from(["damaged", "Customer request", "\u05e9\u05d1\u05d5\u05e8"])
        ),
    }
    fault = draw(st.sampled_from(["none", "order", "amount", "reason", "missing", "extra"]))
    if fault == "order":
        args["order_id"] = draw(INVALID_ORDER_REFS)
    elif fault == "amount":
        args["amount_cents"] = draw(INVALID_AMOUNTS)
    elif fault == "reason":
        args["reason"] = draw(INVALID_REASONS)
    elif fault == "missing":
        del args[draw(st.sampled_from(sorted(args)))]
    elif fault == "extra":
        args[draw(st.sampled_from(["approved", "skip_approval", "currency"]))] = True
    if fault != "none":
        return args, "refused"
    if args["amount_cents"] > settings.DEFAULT_APPROVAL_THRESHOLD_CENTS:
        return args, "approval"
    return args, "executed"


@given(call=refund_calls())
@example(call=({"order_id": "@own", "amount_cents": 5000, "reason": "x"}, "executed"))
@example(call=({"order_id": "@own", "amount_cents": 5001, "reason": "x"}, "approval"))
@example(call=({"order_id": "@own", "amount_cents": 7501, "reason": "x"}, "refused"))
@example(call=({"order_id": "@other", "amount_cents": 100, "reason": "x"}, "refused"))
@example(call=({"order_id": "@own", "amount_cents": 100.0, "reason": "x"}, "refused"))
def test_a_refund_runs_only_when_every_argument_is_valid_and_policy_allows(
    world, hostile_model, call
):
    args, expected = call
    with example_transaction():
        w = world()
        args = hs.resolve_markers(args, w.ids)
        hostile_model(
            [
                (
                    [{"type": "tool_use", "id": "toolu_r1", "name": "issue_refund", "input": args}],
                    "tool_use",
                ),
                ([{"type": "text", "text": "Stopping here."}], "end_turn"),
            ]
        )

        run = _advance(w)

        assert_ended_with_a_reason(run)
        refunds = list(ProviderRefund.objects.values_list("payment_ref", "amount_cents"))
        if expected == "executed":
            assert refunds == [(w.own.payment_ref, args["amount_cents"])]
            assert Effect.objects.get(tool="issue_refund").status == Effect.Status.SUCCEEDED
            assert not _tool_results(run)[0].get("is_error")
        elif expected == "approval":
            assert refunds == []
            assert not Effect.objects.exists()
            assert run.status == Run.Status.AWAITING_APPROVAL
            assert PendingAction.objects.get().amount_cents == args["amount_cents"]
        else:
            assert refunds == []
            assert not Effect.objects.exists()
            assert not PendingAction.objects.exists()
            (result,) = _tool_results(run)
            assert result["is_error"] is True
            assert result["tool_use_id"] == "toolu_r1"
