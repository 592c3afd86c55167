"""Reads for the runs list and the run page."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from django.db.models import Q, QuerySet

from agentops.models import Effect, Run
from traces.models import Span

RUNS_PAGE_SIZE = 50


@dataclass(frozen=True)
class RunPage:
    """One page of runs, newest first. No total count: it would scan the whole table."""

    runs: list[Run]
    has_previous: bool  # newer runs exist
    has_next: bool  # older runs exist

    @property
    def is_first(self) -> bool:
        return not self.has_previous


def _older_than(run: Run) -> Q:
    # Keyset on (created_at, id): the id breaks ties between runs created in the same instant.
    return Q(created_at__lt=run.created_at) | Q(created_at=run.created_at, id__lt=run.id)


def _newer_than(run: Run) -> Q:
    return Q(created_at__gt=run.created_at) | Q(created_at=run.created_at, id__gt=run.id)


def run_list_page(
    *,
    status: str = "",
    after: UUID | None = None,
    before: UUID | None = None,
    size: int = RUNS_PAGE_SIZE,
) -> RunPage:
    """Runs newest first; `after` pages to older runs, `before` to newer ones.

    Raises Run.DoesNotExist when a cursor names no run.
    """
    runs: QuerySet[Run] = Run.objects.select_related("ticket")
    if status:
        runs = runs.filter(status=status)
    newest_first = runs.order_by("-created_at", "-id")

    if before is not None:
        cursor = Run.objects.get(code=before)
        window = list(runs.filter(_newer_than(cursor)).order_by("created_at", "id")[: size + 1])
        has_previous = len(window) > size
        page = list(reversed(window[:size]))
        has_next = runs.filter(_older_than(page[-1] if page else cursor) | Q(pk=cursor.pk)).exists()
        return RunPage(runs=page, has_previous=has_previous, has_next=has_next)

    if after is not None:
        cursor = Run.objects.get(code=after)
        window = list(newest_first.filter(_older_than(cursor))[: size + 1])
        page = window[:size]
        has_previous = runs.filter(
            _newer_than(page[0] if page else cursor) | Q(pk=cursor.pk)
        ).exists()
        return RunPage(runs=page, has_previous=has_previous, has_next=len(window) > size)

    window = list(newest_first[: size + 1])
    return RunPage(runs=window[:size], has_previous=False, has_next=len(window) > size)


def run_get(*, code: UUID) -> Run:
    """The run with its ticket. Raises Run.DoesNotExist."""
    return Run.objects.select_related("ticket").get(code=code)


def run_spans_list(*, run: Run) -> list[Span]:
    """The run's spans in the order they started."""
    return list(Span.objects.filter(run=run).order_by("started_at", "id"))


def run_effects_list(*, run: Run) -> list[Effect]:
    """The ledger rows this run wrote, oldest first."""
    return list(Effect.objects.filter(run=run).order_by("created_at", "id"))
