"""Does a run do what a regression case expects? Pure: a case's expectations and a run's record."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from evals.compare import tool_calls


@dataclass
class CheckResult:
    passed: bool
    got: dict[str, Any]
    failures: list[str] = field(default_factory=list)


def _matches(expected: dict, call: dict) -> bool:
    if expected.get("tool") != call["tool"]:
        return False
    args = call["args"] if isinstance(call["args"], dict) else {}
    return all(k in args and args[k] == v for k, v in (expected.get("args") or {}).items())


def call_text(call: dict) -> str:
    """`issue_refund(amount_cents=1999, order_id="ORD-1")`: a call as a person reads it."""
    args = call.get("args") or {}
    if not isinstance(args, dict):
        return f"{call.get('tool')}({json.dumps(args)})"
    shown = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in sorted(args.items()))
    return f"{call.get('tool')}({shown})"


def case_check(
    *,
    expected_tool_calls: list[dict],
    forbidden_tools: list[str],
    expected_status: str,
    status: str,
    messages: list,
) -> CheckResult:
    calls = tool_calls(messages=messages)
    got = {"status": status, "tool_calls": calls}
    failures = []
    unused = list(calls)
    for expected in expected_tool_calls:
        found = next((c for c in unused if _matches(expected, c)), None)
        if found is None:
            failures.append(f"expected {call_text(expected)}, not called")
        else:
            unused.remove(found)
    for tool in forbidden_tools:
        made = [c for c in calls if c["tool"] == tool]
        if made:
            failures.append(f"called {call_text(made[0])}, which must not be called")
    if expected_status and status != expected_status:
        failures.append(f"ended {status}, expected {expected_status}")
    return CheckResult(passed=not failures, got=got, failures=failures)
