"""Model clients. Every client speaks the Anthropic Messages API shape."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class ModelResponse:
    """One Messages API response: content blocks as plain dicts, like the API's JSON."""

    content: list[dict]
    stop_reason: str  # end_turn / tool_use / max_tokens / refusal / stop_sequence
    model: str
    usage: dict = field(default_factory=dict)  # input_tokens, output_tokens, cache_*
    id: str = ""

    # Both read content as the model sent it, which may be malformed: blocks that are
    # not objects and texts that are not strings are skipped, not crashed on.
    @property
    def tool_uses(self) -> list[dict]:
        return [b for b in self.content if isinstance(b, dict) and b.get("type") == "tool_use"]

    @property
    def text(self) -> str:
        return "\n".join(
            b["text"]
            for b in self.content
            if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
        )


class ModelClient(Protocol):
    def create(
        self,
        *,
        model: str,
        system: str,
        messages: list[dict],
        tools: list[dict],
        max_tokens: int,
    ) -> ModelResponse:
        """Raises agentops.integrations.errors on failure (timeouts, 429, 5xx, 4xx)."""
        ...


def get_model_client(model: str) -> ModelClient:
    if model == "offline" or model.startswith("offline"):
        from agentops.integrations.llm.offline import OfflineModel

        return OfflineModel()
    from agentops.integrations.llm.anthropic_client import AnthropicClient

    return AnthropicClient()
