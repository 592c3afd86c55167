"""What the model answered, checked before it enters the conversation.

Malformed output is not crashed on; it becomes something the model can correct:
a tool call cut off by max_tokens is answered with an is_error tool_result, an
empty or truncated text-only answer is followed by a user message asking again,
a tool_use without an id gets one (so its error can be answered). A refusal ends
the model's part: the run is escalated to a person. Each correction is counted
(a validation-class span), and RUN_MAX_CORRECTIONS bounds them per run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from agentops.integrations.llm import ModelResponse

TRUNCATED_TOOL = (
    "Your tool call was cut off (max_tokens) before its arguments were complete, so it "
    "was not run. Call the tool again with shorter arguments."
)
TRUNCATED_TEXT = (
    "Your answer was cut off (max_tokens). Continue with the tools, briefly; "
    "finish by sending the customer a reply with send_reply."
)
EMPTY = (
    "Your answer was empty. Continue with the tools; finish by sending the customer "
    "a reply with send_reply, or escalate."
)

NO_TOOL_CALL = (
    "Your answer stopped to use a tool but held no tool call. Call the tool you meant, "
    "or finish by sending the customer a reply with send_reply."
)


@dataclass
class Reviewed:
    content: list[dict]
    tool_results: list[dict] = field(default_factory=list)
    follow_up: dict | None = None
    problem: str = ""
    refusal: bool = False

    @property
    def text(self) -> str:
        return "\n".join(b["text"] for b in self.content if b["type"] == "text")


def review_response(response: ModelResponse) -> Reviewed:
    blocks: list[dict] = []
    for n, block in enumerate(response.content or []):
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str) and block["text"]:
            blocks.append({"type": "text", "text": block["text"]})
        elif block.get("type") == "tool_use":
            blocks.append(
                {
                    "type": "tool_use",
                    "id": block.get("id") or f"toolu_missing_id_{n:02d}",
                    "name": block.get("name") or "",
                    "input": block.get("input"),
                }
            )
    tool_uses = [b for b in blocks if b["type"] == "tool_use"]
    stop = response.stop_reason

    if stop == "refusal":
        return Reviewed(content=blocks or [_text("(refused)")], refusal=True)
    if stop == "max_tokens" and tool_uses:
        last = tool_uses[-1]
        result = {
            "type": "tool_result",
            "tool_use_id": last["id"],
            "content": json.dumps({"error": "truncated_tool_call", "message": TRUNCATED_TOOL}),
            "is_error": True,
        }
        return Reviewed(
            content=blocks,
            tool_results=[result],
            problem=f"max_tokens cut off the {last['name'] or 'unnamed'} tool call",
        )
    if not blocks:
        return Reviewed(
            content=[_text("(empty response)")],
            follow_up=_user(EMPTY),
            problem=f"empty response (stop {stop or 'none'})",
        )
    if stop == "tool_use" and not tool_uses:
        return Reviewed(
            content=blocks,
            follow_up=_user(NO_TOOL_CALL),
            problem="stop_reason tool_use without a tool call",
        )
    if stop == "max_tokens":
        return Reviewed(
            content=blocks, follow_up=_user(TRUNCATED_TEXT), problem="max_tokens cut off the text"
        )
    return Reviewed(content=blocks)


def _text(text: str) -> dict:
    return {"type": "text", "text": text}


def _user(text: str) -> dict:
    return {"role": "user", "content": [_text(text)]}
