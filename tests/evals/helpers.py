"""Conversations in the shape Run.messages stores, built step by step."""

from __future__ import annotations

import json
from types import SimpleNamespace


def call(id: str, tool: str, **args) -> dict:
    return {"type": "tool_use", "id": id, "name": tool, "input": args}


def result(id: str, content: dict, *, is_error: bool = False) -> dict:
    block = {"type": "tool_result", "tool_use_id": id, "content": json.dumps(content)}
    if is_error:
        block["is_error"] = True
    return block


def conversation(*steps: tuple[str, list[dict], list[dict]]) -> list[dict]:
    """steps: (text, tool_use blocks, tool_result blocks) per model turn."""
    messages: list[dict] = [{"role": "user", "content": "Please refund ORD-10023"}]
    for text, calls, results in steps:
        content = ([{"type": "text", "text": text}] if text else []) + calls
        messages.append({"role": "assistant", "content": content})
        if results:
            messages.append({"role": "user", "content": results})
    return messages


def fake_run(messages, *, status="resolved", reply="", reason="", tool_results=None):
    return SimpleNamespace(
        messages=messages,
        tool_results=tool_results or [],
        status=status,
        reply=reply,
        outcome_reason=reason,
    )


LOOKUP_OK = {"order_id": "ORD-10023", "status": "delivered", "total_cents": 1999}


def refund_conversation(amount: int = 1999, *, refund_error: str = "", body: str = "Done.") -> list:
    refund = (
        result("t2", {"error": refund_error}, is_error=True)
        if refund_error
        else result("t2", {"refund_id": "re_1", "status": "succeeded"})
    )
    return conversation(
        (
            "Let me look.",
            [call("t1", "lookup_order", order_id="ORD-10023")],
            [result("t1", LOOKUP_OK)],
        ),
        (
            "Refunding.",
            [
                call(
                    "t2", "issue_refund", order_id="ORD-10023", amount_cents=amount, reason="broken"
                )
            ],
            [refund],
        ),
        ("", [call("t3", "send_reply", body=body)], [result("t3", {"sent": True})]),
        ("All done.", [], []),
    )
