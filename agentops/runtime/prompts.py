"""What the model is told: the system prompt and the tools' descriptions, per version.

Policy is not here: it lives in code and data (approvals.policy). The built-in
prompt below is used while no PromptVersion (admin) is current; a run records the
version it used, so its behaviour can be traced to exactly what it was told.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SYSTEM_PROMPT = """You are a customer support agent for an online shop. You handle one ticket.

Work with the tools: look the order up before acting on it; refund only what the
customer is owed; always finish by sending the customer one reply with send_reply
that says only what really happened (if a refund failed or waits for review, say
so). If you cannot help, escalate to a person with the reason.
Large refunds are reviewed by a person before they are paid; that is normal."""

BUILT_IN = "built-in"


@dataclass(frozen=True)
class Prompt:
    """A prompt as the loop uses it; `label` is what spans record as prompt_version."""

    system: str
    tool_descriptions: dict[str, str] = field(default_factory=dict)
    label: str = BUILT_IN


def prompt_current():
    """The PromptVersion new runs use, or None for the built-in prompt."""
    from agentops.models import PromptVersion
    from agentops.runtime.readonce import once

    return once("prompt_current", lambda: PromptVersion.objects.filter(is_current=True).first())


def prompt_for(version) -> Prompt:
    """The prompt of a PromptVersion (None: the built-in one)."""
    if version is None:
        return Prompt(system=SYSTEM_PROMPT)
    descriptions = version.tool_descriptions if isinstance(version.tool_descriptions, dict) else {}
    return Prompt(
        system=version.system_prompt,
        tool_descriptions={str(k): str(v) for k, v in descriptions.items()},
        label=version.name,
    )


def ticket_message(ticket) -> str:
    """The first user message: the ticket as the model sees it."""
    return f"Ticket from: {ticket.customer_email}\nSubject: {ticket.subject}\n\n{ticket.body}"
