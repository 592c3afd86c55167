"""Two runs side by side: their steps aligned, and where they differ.

Pure functions over what a run stored (its conversation, its pending tool
results, its final state), so they work on any two runs: an original and its
replay, a production run and its shadow, or two runs picked by hand.

A step is one model turn: its text, its tool calls and what each call got back.
Steps are aligned by number (step N of one run beside step N of the other), the
way a fork shares its first steps with its original; within a step, tool calls
are aligned by position. Differences are of four kinds, the ones an engineer
asks about first: a different tool, different arguments (which keys), a
different outcome (error or not, which error, which keys of the result), and a
call only one side made. A difference only in free text (a reply's wording, a
refund's stated reason) is shown but is not a divergence: two model calls never
word things the same.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

# Arguments that are prose, not decisions: shown when they differ, never a divergence.
FREE_TEXT_ARGS = frozenset({"body", "reason"})

TOOL = "tool"
ARGS = "args"
OUTCOME = "outcome"
MISSING = "missing"  # the left run made this call, the right one did not
EXTRA = "extra"  # the right run made this call, the left one did not


@dataclass(frozen=True)
class Outcome:
    """What a tool call got back."""

    is_error: bool
    content: Any  # the tool_result's content, parsed from JSON when it is JSON

    @property
    def dry_run(self) -> bool:
        """A dry run's stand-in: the call was recorded as "would have executed", not made."""
        return isinstance(self.content, dict) and self.content.get("dry_run") is True

    @property
    def code(self) -> str:
        """The error code (`order_not_found`, `blocked_by_policy`…), or ""."""
        if self.is_error and isinstance(self.content, dict):
            return str(self.content.get("error", ""))
        return ""


@dataclass(frozen=True)
class ToolCall:
    id: str
    tool: str
    args: Any
    outcome: Outcome | None  # None: not answered (the run stopped or parked here)


@dataclass(frozen=True)
class Step:
    number: int  # 1-based, as Run.model_calls and a span's step count them
    text: str
    calls: list[ToolCall]


@dataclass(frozen=True)
class Final:
    status: str
    reply: str
    reason: str


@dataclass(frozen=True)
class CallPair:
    left: ToolCall | None
    right: ToolCall | None
    kinds: list[str] = field(default_factory=list)  # TOOL, ARGS, OUTCOME, MISSING, EXTRA
    arg_keys: list[str] = field(default_factory=list)  # decision arguments that differ
    text_keys: list[str] = field(default_factory=list)  # free-text arguments that differ
    outcome_note: str = ""
    # One side executed the call, the other only recorded it (dry run): the results
    # cannot be compared, and that is no divergence of the agent's.
    dry_run_note: str = ""

    @property
    def differs(self) -> bool:
        return bool(self.kinds)


@dataclass(frozen=True)
class StepRow:
    number: int
    left: Step | None
    right: Step | None
    calls: list[CallPair]
    text_differs: bool
    divergence: bool = False  # the first step where the runs part ways

    @property
    def differs(self) -> bool:
        return self.left is None or self.right is None or any(c.differs for c in self.calls)


@dataclass(frozen=True)
class Comparison:
    rows: list[StepRow]
    left_final: Final
    right_final: Final
    final_keys: list[str]  # "status", "reply", "reason" where they differ
    divergence_step: int | None  # None: the same decisions all the way

    @property
    def same_decisions(self) -> bool:
        return self.divergence_step is None and "status" not in self.final_keys


def _parse(content: Any) -> Any:
    if isinstance(content, str):
        with contextlib.suppress(ValueError):
            return json.loads(content)
    return content


def _block_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    texts = [b.get("text", "") for b in content or [] if isinstance(b, dict)]
    return "\n".join(t for t in texts if t)


def run_steps(*, messages: list, tool_results: list | None = None) -> list[Step]:
    """The model turns of a stored conversation, each with its calls and their outcomes."""
    answers: dict[str, Outcome] = {}
    result_blocks = [
        block
        for message in messages
        if isinstance(message, dict) and isinstance(message.get("content"), list)
        for block in message["content"]
        if isinstance(block, dict) and block.get("type") == "tool_result"
    ]
    for block in [*result_blocks, *(tool_results or [])]:
        if isinstance(block, dict):
            answers[str(block.get("tool_use_id"))] = Outcome(
                is_error=bool(block.get("is_error")), content=_parse(block.get("content"))
            )
    steps = []
    for message in messages:
        if not isinstance(message, dict) or message.get("role") != "assistant":
            continue
        content = message.get("content")
        blocks = content if isinstance(content, list) else []
        calls = [
            ToolCall(
                id=str(b.get("id", "")),
                tool=str(b.get("name", "")),
                args=b.get("input"),
                outcome=answers.get(str(b.get("id"))),
            )
            for b in blocks
            if isinstance(b, dict) and b.get("type") == "tool_use"
        ]
        steps.append(Step(number=len(steps) + 1, text=_block_text(content), calls=calls))
    return steps


def tool_calls(*, messages: list) -> list[dict]:
    """Every tool call the model made, in order: [{"tool": ..., "args": {...}}]."""
    return [
        {"tool": call.tool, "args": call.args}
        for step in run_steps(messages=messages)
        for call in step.calls
    ]


def _differing_keys(left: Any, right: Any) -> list[str]:
    if isinstance(left, dict) and isinstance(right, dict):
        return sorted(k for k in left.keys() | right.keys() if left.get(k) != right.get(k))
    return [] if left == right else ["(whole value)"]


def _compare_outcomes(left: Outcome | None, right: Outcome | None) -> str:
    """ "" when the same, else a short note of how they differ."""
    if left is None and right is None:
        return ""
    if left is None or right is None:
        return "answered on one side only"
    if left.is_error != right.is_error:
        return (
            "error on the left, success on the right"
            if left.is_error
            else ("success on the left, error on the right")
        )
    if left.is_error and left.code != right.code:
        return f"different error: {left.code or '?'} / {right.code or '?'}"
    keys = _differing_keys(left.content, right.content)
    return f"different result: {', '.join(keys)}" if keys else ""


def compare_calls(left: ToolCall | None, right: ToolCall | None) -> CallPair:
    if right is None:
        return CallPair(left=left, right=None, kinds=[MISSING])
    if left is None:
        return CallPair(left=None, right=right, kinds=[EXTRA])
    if left.tool != right.tool:
        return CallPair(left=left, right=right, kinds=[TOOL])
    kinds = []
    keys = _differing_keys(left.args, right.args)
    arg_keys = [k for k in keys if k not in FREE_TEXT_ARGS]
    text_keys = [k for k in keys if k in FREE_TEXT_ARGS]
    if arg_keys:
        kinds.append(ARGS)
    note = _compare_outcomes(left.outcome, right.outcome)
    dry_note = ""
    if note and _executed_on_one_side_only(left.outcome, right.outcome):
        side = "left" if left.outcome.dry_run else "right"
        note, dry_note = "", f"not executed on the {side} (dry run)"
    if note:
        kinds.append(OUTCOME)
    return CallPair(
        left=left,
        right=right,
        kinds=kinds,
        arg_keys=arg_keys,
        text_keys=text_keys,
        outcome_note=note,
        dry_run_note=dry_note,
    )


def _executed_on_one_side_only(left: Outcome | None, right: Outcome | None) -> bool:
    if left is None or right is None or left.dry_run == right.dry_run:
        return False
    executed = right if left.dry_run else left
    return not executed.is_error  # a real error against a dry success is a real difference


def compare_steps(left: list[Step], right: list[Step]) -> list[StepRow]:
    rows = []
    divergence_found = False
    for i in range(max(len(left), len(right))):
        a = left[i] if i < len(left) else None
        b = right[i] if i < len(right) else None
        a_calls, b_calls = (a.calls if a else []), (b.calls if b else [])
        pairs = [
            compare_calls(
                a_calls[j] if j < len(a_calls) else None,
                b_calls[j] if j < len(b_calls) else None,
            )
            for j in range(max(len(a_calls), len(b_calls)))
        ]
        row = StepRow(
            number=i + 1,
            left=a,
            right=b,
            calls=pairs,
            text_differs=bool(a and b and a.text.strip() != b.text.strip()),
        )
        if row.differs and not divergence_found:
            divergence_found = True
            row = StepRow(**{**row.__dict__, "divergence": True})
        rows.append(row)
    return rows


def compare_runs(left, right) -> Comparison:
    """Two Run rows (or anything with messages, tool_results, status, reply, outcome_reason)."""
    rows = compare_steps(
        run_steps(messages=left.messages or [], tool_results=left.tool_results),
        run_steps(messages=right.messages or [], tool_results=right.tool_results),
    )
    left_final = Final(status=left.status, reply=left.reply, reason=left.outcome_reason)
    right_final = Final(status=right.status, reply=right.reply, reason=right.outcome_reason)
    final_keys = [
        name
        for name in ("status", "reply", "reason")
        if getattr(left_final, name).strip() != getattr(right_final, name).strip()
    ]
    divergence = next((row.number for row in rows if row.divergence), None)
    return Comparison(
        rows=rows,
        left_final=left_final,
        right_final=right_final,
        final_keys=final_keys,
        divergence_step=divergence,
    )


def decisions_agree(left, right) -> bool:
    """The same final status and the same tool calls with the same decision arguments.

    What shadow mode counts as agreement: prose (a reply's wording) may differ.
    """
    if left.status != right.status:
        return False
    a, b = tool_calls(messages=left.messages or []), tool_calls(messages=right.messages or [])
    if len(a) != len(b):
        return False
    return all(
        x["tool"] == y["tool"]
        and not [k for k in _differing_keys(x["args"], y["args"]) if k not in FREE_TEXT_ARGS]
        for x, y in zip(a, b, strict=True)
    )
