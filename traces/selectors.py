"""Reads for the runs list (trace search), the run page and a run's spans."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from uuid import UUID

from django.db.models import DurationField, Exists, ExpressionWrapper, F, OuterRef, Q, QuerySet

from agentops.models import Effect, Run
from traces.models import TOOL_CALL_KIND, Span
from traces.services import ledger_call_span, root_span_build

RUNS_PAGE_SIZE = 50

# What the list can be sorted by: (the key it orders on, descending?).
# Each has an index that serves "ORDER BY key, id LIMIT 51" (see the migrations).
SORTS: dict[str, tuple[str, bool]] = {
    "newest": ("created_at", True),
    "oldest": ("created_at", False),
    # Finished runs only, as for duration: a running run's cost is not its last.
    "cost": ("final_cost", True),
    "duration": ("elapsed", True),
}

# Span kinds that name a tool: a run "used" a tool if it validated, checked or called it.

_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class RunFilters:
    """The trace search. Every field empty means every run."""

    status: str = ""
    error_class: str = ""
    tool: str = ""
    model: str = ""
    since: datetime | None = None  # created at or after
    until: datetime | None = None  # created before
    # A customer email, a run or ticket code, a trace id, or a ticket's external id.
    q: str = ""
    min_duration: timedelta | None = None
    min_cost: Decimal | None = None
    # "production": tickets as they came; "replays": exact replays, re-runs, forks, eval
    # cases and shadow runs (a diverged replay ends failed on purpose).
    origin: str = ""
    sort: str = "newest"

    def as_params(self) -> dict[str, str]:
        """Only the filters that are set, for links (the view formats dates)."""
        return {k: v for k, v in _params(self).items() if v}


def _params(filters: RunFilters) -> dict[str, str]:
    return {
        "status": filters.status,
        "error_class": filters.error_class,
        "tool": filters.tool,
        "model": filters.model,
        "q": filters.q,
        "origin": filters.origin,
        "sort": "" if filters.sort == "newest" else filters.sort,
    }


@dataclass(frozen=True)
class RunPage:
    """One page of runs in the chosen order. No total count: it would scan the whole table."""

    runs: list[Run]
    has_previous: bool  # earlier rows exist in this order
    has_next: bool  # later rows exist in this order
    filters: RunFilters = field(default_factory=RunFilters)

    @property
    def is_first(self) -> bool:
        return not self.has_previous


def _search(q: str) -> Q:
    q = q.strip()
    if "@" in q:
        # Served by the index on UPPER(customer_email) (traces migration 0002).
        return Q(ticket__customer_email__iexact=q)
    if _TRACE_ID.match(q.lower()):
        return Q(trace_id=q.lower())
    try:
        code = UUID(q) if len(q) == 36 else None
    except ValueError:
        code = None
    if code is not None:
        # A run's code or its ticket's: two unique lookups beat one OR across a join.
        run_id = Run.objects.filter(code=code).values_list("pk", flat=True).first()
        return Q(pk=run_id) if run_id is not None else Q(ticket__code=code)
    return Q(ticket__external_id=q)


def run_search(*, filters: RunFilters) -> QuerySet[Run]:
    """Runs matching the filters, unordered, with `elapsed` (finished_at - started_at) annotated."""
    runs: QuerySet[Run] = (
        Run.objects.select_related("ticket")
        # The list never shows the conversation (its turns are not read either).
        .defer("tool_results", "triage", "reply")
    ).annotate(
        # Not `duration`: Run has a property of that name.
        elapsed=ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
    )
    if filters.status:
        runs = runs.filter(status=filters.status)
    if filters.model:
        runs = runs.filter(model=filters.model)
    if filters.origin == "production":
        runs = runs.filter(mode=Run.Mode.PRODUCTION)
    elif filters.origin == "replays":
        runs = runs.exclude(mode=Run.Mode.PRODUCTION)
    if filters.since is not None:
        runs = runs.filter(created_at__gte=filters.since)
    if filters.until is not None:
        runs = runs.filter(created_at__lt=filters.until)
    if filters.q.strip():
        runs = runs.filter(_search(filters.q))
    if filters.min_cost is not None:
        runs = runs.filter(final_cost__gte=filters.min_cost)
    if filters.min_duration is not None:
        runs = runs.filter(elapsed__gte=filters.min_duration)
    if filters.error_class:
        # Served by span_error_class_run (a partial index over the spans that failed).
        runs = runs.filter(
            Exists(Span.objects.filter(run=OuterRef("pk"), error_class=filters.error_class))
        )
    if filters.tool:
        # Served by span_name_run, whose condition is this very kind.
        runs = runs.filter(
            Exists(Span.objects.filter(run=OuterRef("pk"), name=filters.tool, kind=TOOL_CALL_KIND))
        )
    if filters.sort == "duration":
        runs = runs.filter(finished_at__isnull=False, started_at__isnull=False)
    elif filters.sort == "cost":
        runs = runs.filter(final_cost__isnull=False)
    return runs


def _key(run: Run, key: str):
    if key == "elapsed":
        return run.finished_at - run.started_at
    return getattr(run, key)


def _beyond(key: str, value, pk: int, *, descending: bool) -> Q:
    """Rows after (key, id) = (value, pk) in the list's order; id breaks ties.

    The redundant `key <= value` (or >=) up front lets PostgreSQL read the index
    from the cursor on instead of scanning and sorting: an OR alone defeats it.
    """
    op, bound = ("lt", "lte") if descending else ("gt", "gte")
    return Q(**{f"{key}__{bound}": value}) & (
        Q(**{f"{key}__{op}": value}) | Q(**{key: value, f"id__{op}": pk})
    )


def run_list_page(
    *,
    filters: RunFilters | None = None,
    status: str = "",
    after: UUID | None = None,
    before: UUID | None = None,
    size: int = RUNS_PAGE_SIZE,
) -> RunPage:
    """A keyset page of runs; `after` pages on in the order, `before` back.

    Raises Run.DoesNotExist when a cursor names no run in this order.
    """
    filters = filters or RunFilters(status=status)
    key, descending = SORTS.get(filters.sort, SORTS["newest"])
    runs = run_search(filters=filters)
    prefix = "-" if descending else ""
    forward = runs.order_by(f"{prefix}{key}", f"{prefix}id")
    backward = runs.order_by(f"{'' if descending else '-'}{key}", f"{'' if descending else '-'}id")

    def later(run: Run) -> Q:
        return _beyond(key, _key(run, key), run.pk, descending=descending)

    def earlier(run: Run) -> Q:
        return _beyond(key, _key(run, key), run.pk, descending=not descending)

    cursor_code = before or after
    cursor = None
    if cursor_code is not None:
        cursor = Run.objects.get(code=cursor_code)
        if key == "elapsed" and (cursor.finished_at is None or cursor.started_at is None):
            raise Run.DoesNotExist("the cursor run has no duration")
        if key == "final_cost" and cursor.final_cost is None:
            raise Run.DoesNotExist("the cursor run has not finished")

    if before is not None:
        window = list(backward.filter(earlier(cursor))[: size + 1])
        has_previous = len(window) > size
        page = list(reversed(window[:size]))
        edge = page[-1] if page else cursor
        has_next = runs.filter(later(edge)).exists() or runs.filter(pk=cursor.pk).exists()
        return RunPage(runs=page, has_previous=has_previous, has_next=has_next, filters=filters)

    if after is not None:
        window = list(forward.filter(later(cursor))[: size + 1])
        page = window[:size]
        edge = page[0] if page else cursor
        has_previous = runs.filter(earlier(edge)).exists() or runs.filter(pk=cursor.pk).exists()
        return RunPage(
            runs=page, has_previous=has_previous, has_next=len(window) > size, filters=filters
        )

    window = list(forward[: size + 1])
    return RunPage(
        runs=window[:size], has_previous=False, has_next=len(window) > size, filters=filters
    )


def run_filter_choices() -> dict[str, list[str]]:
    """Tools and models to offer in the filter form: known names, not a scan of the data."""
    from django.conf import settings

    from agentops.routing.models import ModelPrice, Route
    from agentops.runtime.tools import TOOLS

    # The models the admin priced or routes to, in one query.
    known = (
        ModelPrice.objects.order_by()
        .values_list("model", flat=True)
        .union(Route.objects.order_by().values_list("model", flat=True))
    )
    models = {"offline", settings.AGENT_MODEL, settings.TRIAGE_MODEL, *known}
    return {"tools": sorted(TOOLS), "models": sorted(m for m in models if m)}


def run_error_classes(*, runs: list[Run]) -> dict[int, list[str]]:
    """The error classes of each run's failed spans, for a page of runs (one query)."""
    found: dict[int, set[str]] = {}
    rows = (
        Span.objects.filter(run__in=[r.pk for r in runs])
        .exclude(error_class="")
        .values_list("run_id", "error_class")
        .order_by()  # no default ordering: it would join DISTINCT
        .distinct()
    )
    for run_id, error_class in rows:
        found.setdefault(run_id, set()).add(error_class)
    return {run_id: sorted(classes) for run_id, classes in found.items()}


def run_get(*, code: UUID) -> Run:
    """The run with its ticket. Raises Run.DoesNotExist."""
    return Run.objects.select_related("ticket").get(code=code)


def run_spans_list(*, run: Run) -> list[Span]:
    """The run's spans in the order they started (each with `run` already set), with
    those an unfinished run has not written yet, open: its root (written when the run
    ends) and the side-effect calls in flight (written with their outcomes)."""
    spans = list(Span.objects.filter(run=run).order_by("started_at", "id"))
    for span in spans:
        span.run = run
    root, calls = _unwritten(run, spans)
    if calls:
        spans = sorted([*spans, *calls], key=lambda s: s.started_at)  # stable: ties by id
    return [*root, *spans]


def span_get(*, run: Run, span_id: str) -> Span:
    """One span of a run (with `run` set), written or open (see run_spans_list).
    Raises Span.DoesNotExist."""
    try:
        span = Span.objects.get(run=run, span_id=span_id)
    except Span.DoesNotExist:
        root, calls = _unwritten(run, list(Span.objects.filter(run=run)))
        for unwritten in [*root, *calls]:
            if unwritten.span_id == span_id:
                return unwritten
        raise
    span.run = run
    return span


def ledger_calls_unrecorded(*, run: Run, spans: list[Span] | None = None) -> list[Effect]:
    """The run's ledger rows whose call has started and no span records: a call in
    flight, or one a dead worker left (see traces.services.ledger_call_span).
    `spans`: the run's spans if already read."""
    started = list(Effect.objects.filter(run=run, status=Effect.Status.STARTED).order_by("pk"))
    if not started:
        return []
    if spans is None:
        spans = list(Span.objects.filter(run=run, kind=Span.Kind.TOOL))
    keys = {s.attributes.get("idempotency_key") for s in spans if s.kind == Span.Kind.TOOL}
    return [effect for effect in started if effect.idempotency_key not in keys]


def _unwritten(run: Run, spans: list[Span]) -> tuple[list[Span], list[Span]]:
    """An unfinished run's spans that are not written yet: its root (unless a root is
    written, as for a run begun when roots were written first) and its calls in
    flight. Nothing for a run that has not started or has ended."""
    if run.started_at is None or run.status in Run.FINAL_STATUSES:
        return [], []
    calls = [
        ledger_call_span(run=run, effect=effect, step=run.model_calls)
        for effect in ledger_calls_unrecorded(run=run, spans=spans)
    ]
    if any(span.kind == Span.Kind.RUN for span in spans):
        return [], calls
    started_at = min([run.started_at, *(span.started_at for span in [*spans, *calls])])
    return [root_span_build(run=run, started_at=started_at)], calls


def span_attempt_count(*, span: Span) -> int:
    """How many attempts the call this span is one attempt of has had so far."""
    return Span.objects.filter(
        run_id=span.run_id,
        parent_span_id=span.parent_span_id,
        kind=span.kind,
        name=span.name,
        step=span.step,
    ).count()


def effect_for_key(*, run: Run, key: str) -> Effect | None:
    """The ledger row a tool span wrote, by its idempotency key."""
    return Effect.objects.filter(run=run, idempotency_key=key).first()


def run_effects_list(*, run: Run) -> list[Effect]:
    """The ledger rows this run wrote, oldest first."""
    return list(Effect.objects.filter(run=run).order_by("created_at", "id"))
