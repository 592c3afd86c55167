"""A run checked against a regression case's expectations."""

from evals.checks import call_text, case_check
from tests.evals.helpers import refund_conversation


def check(**expect):
    defaults = {"expected_tool_calls": [], "forbidden_tools": [], "expected_status": ""}
    defaults.update(expect)
    return case_check(**defaults, status="resolved", messages=refund_conversation(1999))


def test_a_call_matches_on_the_arguments_the_case_names():
    result = check(expected_tool_calls=[{"tool": "issue_refund", "args": {"amount_cents": 1999}}])
    assert result.passed
    assert [c["tool"] for c in result.got["tool_calls"]] == [
        "lookup_order",
        "issue_refund",
        "send_reply",
    ]
    assert result.got["status"] == "resolved"


def test_a_different_amount_fails_and_says_what_was_expected():
    result = check(expected_tool_calls=[{"tool": "issue_refund", "args": {"amount_cents": 999}}])
    assert not result.passed
    assert result.failures == ["expected issue_refund(amount_cents=999), not called"]


def test_a_forbidden_tool_that_was_called_fails():
    result = check(forbidden_tools=["issue_refund"])
    assert not result.passed
    assert "must not be called" in result.failures[0]


def test_a_different_final_status_fails():
    result = check(expected_status="escalated")
    assert result.failures == ["ended resolved, expected escalated"]


def test_two_expected_calls_of_one_tool_need_two_calls():
    once = {"tool": "send_reply", "args": {}}
    assert check(expected_tool_calls=[once]).passed
    assert not check(expected_tool_calls=[once, once]).passed


def test_call_text_reads_like_a_call():
    assert call_text({"tool": "issue_refund", "args": {"order_id": "A", "amount_cents": 5}}) == (
        'issue_refund(amount_cents=5, order_id="A")'
    )
