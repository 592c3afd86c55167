"""What the model answered, checked before it enters the conversation.

Malformed output is not crashed on; it becomes something the model can correct:
a tool call cut off by max_tokens is answered with an is_error tool_result, an
empty or truncated text-only answer is followed by a user message asking again,
a tool_use without a usable id (missing, not a string, malformed, or used before)
gets a fresh one, so each call is answered exactly once; NUL characters and lone
surrogates (valid JSON escapes that no database text column or UTF-8 email can hold)
become U+FFFD, so what the model said can always be stored. A refusal ends
the model's part: the run is escalated to a person. Each correction is counted
(a validation-class span), and RUN_MAX_CORRECTIONS bounds them per run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
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


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

MAX_TOOL_NAME = 64  # the Messages API's limit for a tool's name

# The Messages API's own pattern for tool_use ids; short enough for PendingAction.tool_use_id.
_TOOL_USE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def tool_use_ids(messages: Iterable[dict]) -> set[str]:
    """Every tool_use id already in the conversation."""
    return {
        block["id"]
        for message in messages
        if message.get("role") == "assistant" and isinstance(message.get("content"), list)
        for block in message["content"]
        if isinstance(block, dict)
        and block.get("type") == "tool_use"
        and isinstance(block.get("id"), str)
    }


def review_response(response: ModelResponse, *, taken_ids: Iterable[str] = ()) -> Reviewed:
    """`taken_ids`: tool_use ids earlier in the conversation, which a new call may not reuse."""
    blocks: list[dict] = []
    taken = set(taken_ids)
    for n, block in enumerate(response.content or []):
        if not isinstance(block, dict):
            continue
        block = _storable(block)
        if block.get("type") == "text" and isinstance(block.get("text"), str) and block["text"]:
            blocks.append({"type": "text", "text": block["text"]})
        elif block.get("type") == "tool_use":
            tool_id = block.get("id")
            if not (isinstance(tool_id, str) and _TOOL_USE_ID.match(tool_id)) or tool_id in taken:
                tool_id = _fresh_id(n, taken)
            taken.add(tool_id)
            name = block.get("name")
            name = name if isinstance(name, str) else "" if name is None else str(name)
            blocks.append(
                {
                    "type": "tool_use",
                    "id": tool_id,
                    # No tool's name is longer; a longer one is unknown either way, and is
                    # cut so that it fits where it is recorded (a span's name).
                    "name": name[:MAX_TOOL_NAME],
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


def _storable(value):
    """The value with every string (and key) cleared of what cannot be stored."""
    if isinstance(value, str):
        return _UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_storable(v) for v in value]
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    return value


def _fresh_id(n: int, taken: set[str]) -> str:
    candidate, k = f"toolu_replaced_{n:02d}", 0
    while candidate in taken:
        k += 1
        candidate = f"toolu_replaced_{n:02d}_{k}"
    return candidate


def _text(text: str) -> dict:
    return {"type": "text", "text": text}


def _user(text: str) -> dict:
    return {"role": "user", "content": [_text(text)]}
