"""Migrations that move data: forwards and backwards, nothing lost."""

from decimal import Decimal

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE_TURNS = [("agentops", "0011_expect_function")]
TURNS = [("agentops", "0012_turns")]

HELLO = {"role": "user", "content": "My order arrived broken."}
ANSWER = {"role": "assistant", "content": [{"type": "text", "text": "Sorry — refunded."}]}


def _migrate(target) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.migrate(target)
    return executor


@pytest.mark.django_db(transaction=True)
def test_the_conversation_moves_to_turns_and_back():
    apps = _migrate(BEFORE_TURNS).loader.project_state(BEFORE_TURNS).apps
    Ticket, Run = apps.get_model("agentops", "Ticket"), apps.get_model("agentops", "Run")
    ticket = Ticket.objects.create(customer_email="ada@example.com", subject="s", body="b")
    talked = Run.objects.create(ticket=ticket, messages=[HELLO, ANSWER])
    silent = Run.objects.create(ticket=ticket, messages=[])
    try:
        apps = _migrate(TURNS).loader.project_state(TURNS).apps
        Turn = apps.get_model("agentops", "Turn")
        turns = Turn.objects.order_by("run_id", "seq").values_list("run_id", "seq", "message")
        assert list(turns) == [(talked.pk, 0, HELLO), (talked.pk, 1, ANSWER)]

        apps = _migrate(BEFORE_TURNS).loader.project_state(BEFORE_TURNS).apps
        Run = apps.get_model("agentops", "Run")
        assert Run.objects.get(pk=talked.pk).messages == [HELLO, ANSWER]
        assert Run.objects.get(pk=silent.pk).messages == []
    finally:
        _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())


BEFORE_SPAN_TRACE_IDS_GO = [("traces", "0010_span_id_not_indexed")]


@pytest.mark.django_db(transaction=True)
def test_a_span_s_trace_id_comes_back_from_its_run():
    from agentops import ids
    from agentops.models import Run, Ticket
    from traces.services import span_build

    ticket = Ticket.objects.create(customer_email="ada@example.com", subject="s", body="b")
    run = Run.objects.create(ticket=ticket, trace_id=ids.trace_id())
    span_build(run=run, kind="run", name="run", step=0).save()
    try:
        apps = (
            _migrate(BEFORE_SPAN_TRACE_IDS_GO).loader.project_state(BEFORE_SPAN_TRACE_IDS_GO).apps
        )
        Span = apps.get_model("traces", "Span")
        assert list(Span.objects.values_list("trace_id", flat=True)) == [run.trace_id]
    finally:
        _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())


BEFORE_ROOTS_AT_THE_END = [("traces", "0013_span_name_run_tool_calls")]
ROOTS_AT_THE_END = [("traces", "0014_root_span_written_at_the_end")]


@pytest.mark.django_db(transaction=True)
def test_an_unfinished_run_s_open_root_goes_and_comes_back():
    """A run begun when roots were written as runs began, not ended yet: its end now
    writes its root, so the open one goes (and comes back going back); a finished
    run's root stays."""
    from django.utils import timezone

    apps = _migrate(BEFORE_ROOTS_AT_THE_END).loader.project_state(BEFORE_ROOTS_AT_THE_END).apps
    Ticket, Run = apps.get_model("agentops", "Ticket"), apps.get_model("agentops", "Run")
    Span = apps.get_model("traces", "Span")
    ticket = Ticket.objects.create(customer_email="ada@example.com", subject="Mug", body="b")
    now = timezone.now()
    parked = Run.objects.create(
        ticket=ticket, trace_id="a" * 32, status="awaiting_approval", started_at=now
    )
    ended = Run.objects.create(ticket=ticket, trace_id="b" * 32, status="resolved", started_at=now)
    for run, ended_at in ((parked, None), (ended, now)):
        Span.objects.create(
            run=run,
            span_id=run.trace_id[:16],
            kind="run",
            name="run",
            step=0,
            status="ok" if ended_at else "started",
            attributes={},
            started_at=now,
            ended_at=ended_at,
        )
    Span.objects.create(
        run=parked,
        span_id="c" * 16,
        kind="triage",
        name="triage",
        step=0,
        status="ok",
        attributes={},
        started_at=now,
        ended_at=now,
    )
    try:
        _migrate(ROOTS_AT_THE_END)
        kinds = Span.objects.order_by("run_id", "kind").values_list("run_id", "kind")
        assert list(kinds) == [(parked.pk, "triage"), (ended.pk, "run")]

        _migrate(BEFORE_ROOTS_AT_THE_END)
        root = Span.objects.get(run=parked, kind="run")
        assert (root.span_id, root.status, root.started_at) == ("a" * 16, "started", now)
        assert root.input == {"ticket": str(ticket.code), "subject": "Mug"}
        assert Span.objects.filter(kind="run").count() == 2
    finally:
        _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())


BEFORE_FINAL_COST = [
    ("traces", "0014_root_span_written_at_the_end"),
    ("agentops", "0013_run_status_last"),
]
FINAL_COST = [("traces", "0015_run_final_cost_index")]


def _run_indexes() -> set[str]:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "agentops_run")
    return {name for name, about in constraints.items() if about["index"]}


@pytest.mark.django_db(transaction=True)
def test_the_cost_index_moves_to_final_cost_and_back():
    """Runs already there get their final_cost (finished ones only), and the cost sort's
    index goes with it; backwards, run_cost comes back and final_cost goes."""
    from django.utils import timezone

    try:
        apps = _migrate(BEFORE_FINAL_COST).loader.project_state(BEFORE_FINAL_COST).apps
        assert "run_cost" in _run_indexes()
        Ticket, Run = apps.get_model("agentops", "Ticket"), apps.get_model("agentops", "Run")
        ticket = Ticket.objects.create(customer_email="ada@example.com", subject="s", body="b")
        done = Run.objects.create(ticket=ticket, cost="0.25", finished_at=timezone.now())
        running = Run.objects.create(ticket=ticket, cost="0.40")

        apps = _migrate(FINAL_COST).loader.project_state(FINAL_COST).apps
        Run = apps.get_model("agentops", "Run")
        final = dict(Run.objects.values_list("pk", "final_cost"))
        assert (final[done.pk], final[running.pk]) == (Decimal("0.25"), None)
        assert "run_final_cost" in _run_indexes() and "run_cost" not in _run_indexes()

        _migrate(BEFORE_FINAL_COST)
        assert "run_cost" in _run_indexes() and "run_final_cost" not in _run_indexes()
        with connection.cursor() as cursor:
            columns = connection.introspection.get_table_description(cursor, "agentops_run")
        assert "final_cost" not in {c.name for c in columns}
    finally:
        _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())


BEFORE_SHARDS = [("routing", "0003_daily_spend")]
SHARDS = [("routing", "0004_daily_spend_shards")]


@pytest.mark.django_db(transaction=True)
def test_a_day_s_spend_goes_to_shard_0_and_its_shards_add_up_backwards():
    from datetime import date

    try:
        apps = _migrate(BEFORE_SHARDS).loader.project_state(BEFORE_SHARDS).apps
        DailySpend = apps.get_model("routing", "DailySpend")
        DailySpend.objects.create(day=date(2026, 3, 1), cost=Decimal("1.5"))

        apps = _migrate(SHARDS).loader.project_state(SHARDS).apps
        DailySpend = apps.get_model("routing", "DailySpend")
        assert list(DailySpend.objects.values_list("day", "shard", "cost")) == [
            (date(2026, 3, 1), 0, Decimal("1.5"))
        ]
        DailySpend.objects.create(day=date(2026, 3, 1), shard=5, cost=Decimal("0.25"))
        DailySpend.objects.create(day=date(2026, 3, 2), shard=5, cost=Decimal("2"))

        apps = _migrate(BEFORE_SHARDS).loader.project_state(BEFORE_SHARDS).apps
        DailySpend = apps.get_model("routing", "DailySpend")
        assert sorted(DailySpend.objects.values_list("day", "cost")) == [
            (date(2026, 3, 1), Decimal("1.75")),
            (date(2026, 3, 2), Decimal("2")),
        ]
    finally:
        _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
