"""Reads: a run's replays and origin, outcomes by prompt version, shadow agreement."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Count, Q, QuerySet

from agentops.models import PromptVersion, Run
from evals.compare import decisions_agree, run_steps
from evals.models import EvalRun, RegressionCase, ShadowRun


def run_replays_list(*, run: Run) -> list[Run]:
    """The runs that reproduce or shadow this one, newest first."""
    return list(run.replays.select_related("prompt_version").order_by("-created_at"))


def prompt_versions_list() -> list[PromptVersion]:
    return list(PromptVersion.objects.order_by("-is_current", "-created_at"))


def regression_cases_for_run(*, run: Run) -> list[RegressionCase]:
    return list(RegressionCase.objects.filter(source_run=run).order_by("-created_at"))


def eval_runs_list(*, limit: int = 50) -> QuerySet[EvalRun]:
    return EvalRun.objects.select_related("prompt_version", "created_by")[:limit]


@dataclass(frozen=True)
class VersionOutcomes:
    name: str  # the prompt version's name, or "built-in"
    runs: int
    resolved: int
    escalated: int
    failed: int
    open: int

    def rate(self, count: int) -> float | None:
        finished = self.resolved + self.escalated + self.failed
        return count / finished * 100 if finished else None

    @property
    def resolved_rate(self) -> float | None:
        return self.rate(self.resolved)

    @property
    def escalated_rate(self) -> float | None:
        return self.rate(self.escalated)

    @property
    def failed_rate(self) -> float | None:
        return self.rate(self.failed)


def outcomes_by_prompt_version(*, since: datetime, until: datetime) -> list[VersionOutcomes]:
    """Production runs created in [since, until), by the prompt version they were told.

    One grouped query (run_created_id serves the range). Replays, evals and shadow runs
    are left out: they are not what customers got.
    """
    rows = (
        Run.objects.filter(created_at__gte=since, created_at__lt=until, mode=Run.Mode.PRODUCTION)
        .order_by()
        .values("prompt_version__name")
        .annotate(
            runs=Count("pk"),
            resolved=Count("pk", filter=Q(status=Run.Status.RESOLVED)),
            escalated=Count("pk", filter=Q(status=Run.Status.ESCALATED)),
            failed=Count("pk", filter=Q(status=Run.Status.FAILED)),
        )
    )
    found = [
        VersionOutcomes(
            name=row["prompt_version__name"] or "built-in",
            runs=row["runs"],
            resolved=row["resolved"],
            escalated=row["escalated"],
            failed=row["failed"],
            open=row["runs"] - row["resolved"] - row["escalated"] - row["failed"],
        )
        for row in rows
    ]
    return sorted(found, key=lambda v: (-v.runs, v.name))


@dataclass(frozen=True)
class ShadowPair:
    production: Run
    shadow: Run
    agree: bool


@dataclass
class CandidateAgreement:
    prompt: str
    model: str
    compared: int = 0
    agreed: int = 0

    @property
    def agreement_rate(self) -> float | None:
        return self.agreed / self.compared * 100 if self.compared else None


@dataclass(frozen=True)
class ShadowSummary:
    compared: int  # pairs where both runs have finished
    agreed: int
    pending: int  # shadows still running
    differing: list[ShadowPair]
    # The same figures per candidate (prompt version, model): the setting may have changed.
    candidates: list[CandidateAgreement] = field(default_factory=list)

    @property
    def agreement_rate(self) -> float | None:
        return self.agreed / self.compared * 100 if self.compared else None


def shadow_summary(*, limit: int = 500) -> ShadowSummary:
    """The latest shadow runs against their production runs: how often they decide alike."""
    links = ShadowRun.objects.select_related(
        "production__ticket", "shadow__prompt_version"
    ).prefetch_related("production__turns", "shadow__turns")[:limit]
    compared = agreed = pending = 0
    differing = []
    candidates: dict[tuple[str, str], CandidateAgreement] = {}
    for link in links:
        production, shadow = link.production, link.shadow
        if not (shadow.is_final and production.is_final):
            pending += 1
            continue
        prompt = shadow.prompt_version.name if shadow.prompt_version else "built-in"
        candidate = candidates.setdefault(
            (prompt, shadow.model), CandidateAgreement(prompt=prompt, model=shadow.model)
        )
        compared += 1
        candidate.compared += 1
        if decisions_agree(production, shadow):
            agreed += 1
            candidate.agreed += 1
        else:
            differing.append(ShadowPair(production=production, shadow=shadow, agree=False))
    return ShadowSummary(
        compared=compared,
        agreed=agreed,
        pending=pending,
        differing=differing,
        candidates=sorted(candidates.values(), key=lambda c: -c.compared),
    )


def replay_panel_get(*, run: Run, user: Any) -> dict[str, Any]:
    """What the trace page shows about replaying a run: origin, replays, what the user may do."""
    from evals.services import LIVE_PERMISSION, REPLAY_PERMISSION

    return {
        "run": run,
        "is_shadow": ShadowRun.objects.filter(shadow=run).exists(),
        "replays": run_replays_list(run=run),
        "cases": regression_cases_for_run(run=run),
        "can_replay": user.has_perm(REPLAY_PERMISSION),
        "can_replay_live": user.has_perm(LIVE_PERMISSION),
        "can_add_case": user.has_perm("evals.add_regressioncase"),
        "fork_steps": list(range(1, len(run_steps(messages=run.messages or [])) + 1)),
        "prompt_versions": prompt_versions_list(),
    }
