"""Aligning two runs step by step and naming how they differ."""

from evals.compare import (
    ARGS,
    EXTRA,
    MISSING,
    OUTCOME,
    TOOL,
    compare_runs,
    decisions_agree,
    run_steps,
    tool_calls,
)
from tests.evals.helpers import (
    LOOKUP_OK,
    call,
    conversation,
    fake_run,
    refund_conversation,
    result,
)


def test_it_reads_the_steps_of_a_conversation_with_each_calls_outcome():
    steps = run_steps(messages=refund_conversation())

    assert [s.number for s in steps] == [1, 2, 3, 4]
    assert steps[0].text == "Let me look."
    assert steps[0].calls[0].tool == "lookup_order"
    assert steps[0].calls[0].outcome.content == LOOKUP_OK
    assert steps[1].calls[0].args["amount_cents"] == 1999
    assert steps[3].calls == []


def test_a_call_answered_only_in_the_pending_tool_results_has_its_outcome():
    messages = conversation(("", [call("t1", "lookup_order", order_id="X")], []))
    pending = [result("t1", {"error": "order_not_found"}, is_error=True)]

    step = run_steps(messages=messages, tool_results=pending)[0]

    assert step.calls[0].outcome.is_error
    assert step.calls[0].outcome.code == "order_not_found"


def test_a_call_never_answered_has_no_outcome():
    messages = conversation(("", [call("t1", "issue_refund", order_id="X", amount_cents=5)], []))

    assert run_steps(messages=messages)[0].calls[0].outcome is None


def test_two_identical_runs_have_no_divergence():
    comparison = compare_runs(fake_run(refund_conversation()), fake_run(refund_conversation()))

    assert comparison.divergence_step is None
    assert comparison.same_decisions
    assert not any(row.differs for row in comparison.rows)
    assert comparison.final_keys == []


def test_different_arguments_name_the_keys_and_mark_the_divergence():
    comparison = compare_runs(
        fake_run(refund_conversation(1999)), fake_run(refund_conversation(999))
    )

    assert comparison.divergence_step == 2
    row = comparison.rows[1]
    assert row.divergence
    pair = row.calls[0]
    assert pair.kinds == [ARGS]
    assert pair.arg_keys == ["amount_cents"]
    assert not comparison.rows[0].differs
    assert [r.divergence for r in comparison.rows].count(True) == 1


def test_a_different_wording_is_shown_but_is_no_divergence():
    comparison = compare_runs(
        fake_run(refund_conversation(body="Refunded.")),
        fake_run(refund_conversation(body="Your refund is on its way.")),
    )

    pair = comparison.rows[2].calls[0]
    assert pair.text_keys == ["body"]
    assert pair.kinds == []
    assert comparison.divergence_step is None


def test_a_different_tool_is_a_divergence():
    left = conversation(("", [call("t1", "lookup_order", order_id="ORD-1")], [result("t1", {})]))
    right = conversation(("", [call("t1", "escalate", reason="unsure")], [result("t1", {})]))

    comparison = compare_runs(fake_run(left), fake_run(right))

    assert comparison.rows[0].calls[0].kinds == [TOOL]
    assert comparison.divergence_step == 1


def test_an_error_against_a_success_is_a_different_outcome():
    comparison = compare_runs(
        fake_run(refund_conversation()),
        fake_run(refund_conversation(refund_error="already_refunded")),
    )

    pair = comparison.rows[1].calls[0]
    assert pair.kinds == [OUTCOME]
    assert pair.outcome_note == "success on the left, error on the right"
    assert comparison.divergence_step == 2


def test_two_different_errors_name_both_codes():
    left = conversation(
        (
            "",
            [call("t1", "lookup_order", order_id="X")],
            [result("t1", {"error": "a"}, is_error=True)],
        )
    )
    right = conversation(
        (
            "",
            [call("t1", "lookup_order", order_id="X")],
            [result("t1", {"error": "b"}, is_error=True)],
        )
    )

    pair = compare_runs(fake_run(left), fake_run(right)).rows[0].calls[0]

    assert pair.outcome_note == "different error: a / b"


def test_a_shorter_run_leaves_the_other_sides_steps_and_calls_unmatched():
    full = refund_conversation()
    short = conversation(
        (
            "Let me look.",
            [call("t1", "lookup_order", order_id="ORD-10023")],
            [result("t1", LOOKUP_OK)],
        ),
        ("I will escalate.", [], []),
    )

    comparison = compare_runs(fake_run(full), fake_run(short, status="escalated"))

    assert comparison.divergence_step == 2
    assert comparison.rows[1].calls[0].kinds == [MISSING]
    assert comparison.rows[2].right is None and comparison.rows[2].differs
    assert "status" in comparison.final_keys
    assert not comparison.same_decisions
    reverse = compare_runs(fake_run(short, status="escalated"), fake_run(full))
    assert reverse.rows[1].calls[0].kinds == [EXTRA]


def test_tool_calls_lists_every_call_in_order():
    assert [c["tool"] for c in tool_calls(messages=refund_conversation())] == [
        "lookup_order",
        "issue_refund",
        "send_reply",
    ]


def test_decisions_agree_ignores_wording_but_not_amounts_or_status():
    base = fake_run(refund_conversation(body="A"))
    assert decisions_agree(base, fake_run(refund_conversation(body="B")))
    assert not decisions_agree(base, fake_run(refund_conversation(999)))
    assert not decisions_agree(base, fake_run(refund_conversation(), status="escalated"))


def _dry_refund_conversation():
    dry = {"order_id": "ORD-10023", "amount_cents": 1999, "status": "dry_run", "dry_run": True}
    return conversation(
        (
            "",
            [call("t1", "issue_refund", order_id="ORD-10023", amount_cents=1999)],
            [result("t1", dry)],
        )
    )


def test_a_call_a_dry_run_only_recorded_is_no_divergence_from_the_executed_one():
    executed = conversation(
        (
            "",
            [call("t1", "issue_refund", order_id="ORD-10023", amount_cents=1999)],
            [result("t1", {"refund_id": "re_1", "status": "succeeded"})],
        )
    )

    comparison = compare_runs(fake_run(executed), fake_run(_dry_refund_conversation()))

    pair = comparison.rows[0].calls[0]
    assert pair.kinds == []
    assert pair.dry_run_note == "not executed on the right (dry run)"
    assert comparison.divergence_step is None


def test_a_real_error_against_a_dry_run_success_is_still_a_different_outcome():
    failed = conversation(
        (
            "",
            [call("t1", "issue_refund", order_id="ORD-10023", amount_cents=1999)],
            [result("t1", {"error": "card_declined"}, is_error=True)],
        )
    )

    pair = compare_runs(fake_run(failed), fake_run(_dry_refund_conversation())).rows[0].calls[0]

    assert pair.kinds == [OUTCOME]
    assert pair.dry_run_note == ""
