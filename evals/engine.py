"""The replay engine (agentops.replay), as this app calls it: one door.

The views, the evals command and shadow mode share these calls, and a test can
stand in for the engine in one place. An eval case and a shadow run are a dry
re-run of a ticket with another prompt or model: the engine's dry fork from the
first step, labelled with its own mode.
"""

from __future__ import annotations

from typing import Any

from agentops.models import Run
from agentops.replay import ReplayError, replay_start
from agentops.runtime.replaying import signature

__all__ = ["ReplayError", "dry_rerun", "replay", "tool_signature"]


def replay(
    run: Run,
    *,
    mode: str,
    from_step: int | None = None,
    model: str | None = None,
    prompt_version: Any = None,
    live: bool = False,
    user: Any = None,
    tool_results: dict | None = None,
    inline: bool | None = None,
) -> Run:
    return replay_start(
        run,
        mode=mode,
        from_step=from_step,
        model=model,
        prompt_version=prompt_version,
        live=live,
        user=user,
        tool_results=tool_results,
        inline=inline,
    )


def dry_rerun(
    run: Run,
    *,
    mode: str,
    model: str | None = None,
    prompt_version: Any = None,
    tool_results: dict | None = None,
    inline: bool = False,
) -> Run:
    """The ticket again from the first model step, in dry run: nothing is executed.

    mode is Run.Mode.EVAL or Run.Mode.SHADOW, which the engine runs as a dry fork.
    """
    return replay(
        run,
        mode=mode,
        from_step=1,
        model=model,
        prompt_version=prompt_version,
        live=False,
        tool_results=tool_results,
        inline=inline,
    )


def tool_signature(tool: str, args: dict) -> str:
    """The engine's key for one call's given result."""
    return signature(tool, args)
