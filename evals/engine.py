"""The replay engine, as this app calls it: agentops.replay.replay_start, one door.

Kept to one module so the views, the evals command and shadow mode share one
call, and a test can stand in for the engine in one place.
"""

from __future__ import annotations

from typing import Any

from agentops.models import Run


class ReplayUnavailable(Exception):
    """The replay engine is not installed in this build."""


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
) -> Run:
    try:
        from agentops.replay import replay_start
    except ImportError as exc:
        raise ReplayUnavailable("The replay engine (agentops.replay) is not installed.") from exc
    return replay_start(
        run,
        mode=mode,
        from_step=from_step,
        model=model,
        prompt_version=prompt_version,
        live=live,
        user=user,
        tool_results=tool_results,
    )
