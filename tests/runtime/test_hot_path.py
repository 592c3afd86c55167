"""The hot path's cost in queries: a regression here is a regression of `make bench`.

The standard ticket (model → lookup_order → model → issue_refund → model →
send_reply → model) with the offline model, priced as in production, and the
simulated gateway, every safeguard on. The counts are exact on purpose: a change
that adds a query or a transaction must say so here, and one that saves some must
lower the figure.
"""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agentops.bench.runner import price_like_production, statements, write_transactions
from agentops.models import Effect, Run
from agentops.runtime.config_cache import TOKEN_SQL, config_cache_clear
from agentops.runtime.loop import run_advance
from agentops.shop.models import Order
from agentops.simgateway.models import ScriptedFault
from tests.runtime.conftest import text
from tests.runtime.helpers import conversation_of_spans, refund_in_ledger
from traces.models import Span
from traces.services import OUTCOME_FIELDS

pytestmark = pytest.mark.django_db

# claim · triage · the first model step with the lookup's answer, before the second
# call · per side effect: the model step that asked for it with its ledger row and
# started span, then the outcome · the last model step with the finish · the
# simulated provider's refund and the shop's record of it. (12 before a model step
# that asks for a side effect was written with its ledger row.)
WRITE_TRANSACTIONS = 10
# Every SQL statement but BEGIN, COMMIT and savepoints, in a worker past its first
# ticket. The admin's tables (autonomy share, routes, model prices, the current
# prompt version, risk policies) are kept per process: a task takes one config token
# instead, read with the run when it is claimed, and reads the tables again only when
# a write has replaced the token (5 statements more: COLD_STATEMENTS). The
# validation-span count is read once per task (none when the run begins), a model
# step writes its spans in one INSERT, and the last step and the run's end are one
# UPDATE of the run. A reply's ledger row is inserted without a read (its key is new
# but on a re-run), and so is a refund's whose check passed (the ledger is read
# only when the check refuses, to tell a retry of a refund made from a second one).
# An order is read with its customer and refunds in one query (3 reads per ticket),
# the provider's refund takes 2 statements (the charge FOR UPDATE, then INSERT ...
# SELECT if no fault is scripted and what is left covers it; SQLite
# serialises writers and takes no lock: 1) and the shop records the refund in one
# INSERT ... SELECT ... ON CONFLICT. The claim is one statement on PostgreSQL (the
# UPDATE reads the run back), two on SQLite. The daily budget's spend is read by the
# claim and then by each transaction that saves the run before a model call, last
# (5 reads, each used by a budget check: triage's and the 4 model calls'; not by a
# side effect's ledger transaction, which a save of the call's outcome follows),
# instead of by each check (5 reads of their own). A model step that asks for a
# side effect is saved by the ledger row's transaction, in its UPDATE of the run
# (which fences the lease) and its one INSERT of spans (the step's and the side
# effect's so far). Each of the 5 saves
# that extend the conversation (the run's beginning and the 4 model steps) inserts
# its new turns in an INSERT of its own, in the same round trip; the claim reads
# the conversation on PostgreSQL, and SQLite in a query of its own (below).
# 84 with BEGIN/COMMIT before issue 8's second round, 63 before the config token, 58
# before the writes of a transaction went out together, 38 before issue 8's fifth,
# 36 before the conversation was kept as turns, 41 before the refund's ledger read
# moved behind its check, 40 before the ledger transactions stopped reading the day's
# spend, 38 before a ledger transaction's spans went out in one INSERT with those of
# the model step it saves, 36 before the root span was written once, when the run
# ends, with the last step's spans (it was inserted when the run began and updated at
# its end). A side effect's span, written once with its outcome, is inserted where it
# was updated (it was inserted started with the ledger row): the same count. A side
# effect's outcome locks the run where it updated it (its answer is in the ledger row
# and goes with the run's next write): the same count too. 35 before the model was
# priced here as in production (and in `make bench`): each of the 5 priced calls adds
# its cost to the day's spend, one upsert in the transaction that saves it.
STATEMENTS = 40
# Queries sent to PostgreSQL: the writes of each of the run's transactions go out in
# one pipeline, one round trip (agentops.db.batch), BEGIN and COMMIT included, and
# so does the provider's refund (4 round trips before issue 8's fifth round); the
# claim reads the run back in its UPDATE (a SELECT of its own before), and the day's
# spend comes with the claim and the run's saves (5 reads of their own before), and
# a model step that asks for a side effect goes out with its ledger row, and the
# refund's ledger row is not read before it is inserted (15 before). SQLite takes
# its statements one at a time.
ROUND_TRIPS = 14
COLD_STATEMENTS = STATEMENTS + 5
# On PostgreSQL, outside a test's transaction: the claim, the run's beginning, the
# first model step (saved before the second call) and the resolution are progress,
# committed without waiting for the WAL flush, each with a statement that says so.
PROGRESS_COMMITS = 4


def _statements_expected(count: int) -> int:
    """SQLite's claim reads the conversation in a query of its own (see _claimed_columns)."""
    return count if connection.vendor == "postgresql" else count + 1


@pytest.fixture(autouse=True)
def _priced_like_production():
    """Each model call costs money, as in production and in `make bench`: the run's
    cost changes at each step and the day's spend is written."""
    price_like_production()


@pytest.fixture
def standard_ticket(refund_ticket):
    return refund_ticket()


@pytest.fixture
def warm_process(make_order, submit):
    """A worker past its first ticket: it has read the admin's tables under today's token."""
    order = make_order(total_cents=1500)
    run = submit(f"My order {order.order_id} arrived broken. Please refund it.")
    assert run_advance(run_id=run.pk, worker="warm") == Run.Status.RESOLVED


def _run_counted(run) -> tuple[str, list[dict]]:
    with CaptureQueriesContext(connection) as queries:
        status = run_advance(run_id=run.pk, worker="hot-path")
    return status, queries.captured_queries


def _span_updates(queries: list[dict]) -> list[list[str]]:
    """The columns each UPDATE of spans assigns."""
    return [
        re.findall(r'"(\w+)" = ', sql[sql.index('UPDATE "traces_span"') :].split(" WHERE ")[0])
        for sql in (q["sql"] for q in queries)
        if 'UPDATE "traces_span"' in sql
    ]


def test_the_standard_ticket_writes_each_span_once_finished(standard_ticket):
    """No span is updated: the root is written when the run ends, and a side effect's
    call with its outcome (its ledger row records the attempt before the call)."""
    status, queries = _run_counted(standard_ticket)

    assert status == Run.Status.RESOLVED
    assert _span_updates(queries) == []
    root = Span.objects.get(run=standard_ticket, kind=Span.Kind.RUN)
    assert (root.status, root.output) == (Span.Status.OK, {"status": Run.Status.RESOLVED})
    refund = Span.objects.get(run=standard_ticket, kind=Span.Kind.TOOL, name="issue_refund")
    assert (refund.status, refund.attempt) == (Span.Status.OK, 1)
    assert refund.started_at < refund.ended_at


def test_a_side_effect_s_outcome_locks_the_run_and_does_not_rewrite_it(standard_ticket):
    """The run is written 6 times: the claim, its beginning, and each model step's save
    (the first before the second call, the refund's and the reply's with their ledger
    rows, the last with the end). A side effect's outcome, which its ledger row holds,
    locks the run (the lease fence) and leaves the answer to the run's next write."""
    status, queries = _run_counted(standard_ticket)

    assert status == Run.Status.RESOLVED
    sql = [q["sql"] for q in queries]
    assert sum(s.count('UPDATE "agentops_run"') for s in sql) == 6, "\n".join(sql)
    if connection.vendor == "postgresql":  # one round trip a transaction
        outcomes = [s for s in sql if 'UPDATE "agentops_effect"' in s]
        assert len(outcomes) == 2
        assert all('UPDATE "agentops_run"' not in s and "FOR UPDATE" in s for s in outcomes)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's HOT updates")
def test_a_model_step_s_save_changes_no_indexed_column_of_the_run(standard_ticket):
    """Of the run's 6 updates, 3 change an indexed column and take an entry in each of
    its indexes: the claim (status, lease), the beginning (model) and the end (status,
    final_cost). The saves of the model steps in between are HOT updates, although
    each changes the run's cost: the runs list's cost index is on final_cost."""

    def run_updates() -> tuple[int, int]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables WHERE relname = %s",
                [Run._meta.db_table],
            )
            return cursor.fetchone()

    updated, hot = run_updates()
    status, _ = _run_counted(standard_ticket)
    updated_after, hot_after = run_updates()

    assert status == Run.Status.RESOLVED
    standard_ticket.refresh_from_db()
    assert standard_ticket.cost > 0 and standard_ticket.final_cost == standard_ticket.cost
    assert (updated_after - updated, hot_after - hot) == (6, 3)


def test_a_retry_s_started_span_is_finished_with_its_outcome_columns_only(standard_ticket):
    """A retry's span is saved started, before its call; its outcome sets what
    span_finish sets, not the input and the rest again."""
    order = Order.objects.latest("pk")  # the standard ticket's
    ScriptedFault.objects.create(payment_ref=order.payment_ref, kind="server_error", remaining=1)

    status, queries = _run_counted(standard_ticket)

    assert status == Run.Status.RESOLVED
    assert _span_updates(queries) == [list(OUTCOME_FIELDS)]
    attempts = Span.objects.filter(run=standard_ticket, kind=Span.Kind.TOOL, name="issue_refund")
    assert [(s.attempt, s.status) for s in attempts.order_by("attempt")] == [
        (1, Span.Status.ERROR),
        (2, Span.Status.OK),
    ]


def test_the_standard_ticket_takes_ten_write_transactions(standard_ticket):
    status, queries = _run_counted(standard_ticket)

    assert status == Run.Status.RESOLVED
    assert write_transactions(queries) == WRITE_TRANSACTIONS, "\n".join(
        q["sql"][:120] for q in queries
    )


def test_the_standard_ticket_takes_a_fixed_number_of_statements(warm_process, standard_ticket):
    status, queries = _run_counted(standard_ticket)

    assert status == Run.Status.RESOLVED
    assert statements(queries) == _statements_expected(STATEMENTS), "\n".join(
        q["sql"][:120] for q in queries
    )
    if connection.vendor == "postgresql":
        assert len(queries) == ROUND_TRIPS, "\n".join(q["sql"][:120] for q in queries)
    # The config token comes with the claimed run's row: no read of its own.
    assert sum(q["sql"] == TOKEN_SQL for q in queries) == 0
    assert sum(TOKEN_SQL in q["sql"] for q in queries) == 1


_NO_FLUSH = "set_config('synchronous_commit', 'off', true)"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's commits")
@pytest.mark.django_db(transaction=True)
def test_only_progress_commits_without_waiting_for_its_flush(warm_process, standard_ticket):
    status, queries = _run_counted(standard_ticket)

    assert status == Run.Status.RESOLVED
    unflushed = [q["sql"] for q in queries if _NO_FLUSH in q["sql"]]
    assert len(unflushed) == PROGRESS_COMMITS, "\n".join(q["sql"][:160] for q in queries)
    claim, begin, step, resolution = unflushed
    assert '"lease_owner"' in claim and '"started_at"' in claim
    assert '"triage"' in begin
    assert '"model_calls"' in step
    assert '"finished_at"' in resolution
    # Never a ledger row, whose commit must be on disk before its side effect.
    assert not [sql for sql in unflushed if "agentops_effect" in sql]
    assert statements(queries) == STATEMENTS + PROGRESS_COMMITS
    assert len(queries) == ROUND_TRIPS
    assert write_transactions(queries) == WRITE_TRANSACTIONS


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's commits")
@pytest.mark.django_db(transaction=True)
def test_every_commit_waits_for_its_flush_when_progress_must_be_durable(
    warm_process, standard_ticket, settings
):
    settings.RUN_PROGRESS_DURABLE = True

    status, queries = _run_counted(standard_ticket)

    assert status == Run.Status.RESOLVED
    assert not [q["sql"] for q in queries if _NO_FLUSH in q["sql"]]
    assert statements(queries) == STATEMENTS


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's commits")
@pytest.mark.django_db(transaction=True)
def test_an_escalation_at_the_end_waits_for_its_flush(scripted, submit):
    # The model's turn ends without a reply: the step's save, a progress write, takes
    # the escalation with it, which a person will read: durable.
    scripted([text("I give up.")])
    run = submit("refund")

    status, queries = _run_counted(run)

    assert status == Run.Status.ESCALATED
    last = queries[-1]["sql"]
    assert '"finished_at"' in last and '"model_calls"' in last
    assert _NO_FLUSH not in last


def test_a_process_first_ticket_reads_the_admin_tables(standard_ticket):
    config_cache_clear()  # a new worker process

    status, queries = _run_counted(standard_ticket)

    assert status == Run.Status.RESOLVED
    assert statements(queries) == _statements_expected(COLD_STATEMENTS), "\n".join(
        q["sql"][:120] for q in queries
    )


def test_no_query_repeats_per_row_of_history(make_order, submit, standard_ticket):
    """No N+1: a customer with many past tickets and refunds costs the same queries."""
    for n in range(5):
        order = make_order(total_cents=1000 + n)
        run = submit(f"My order {order.order_id} arrived broken. Please refund it.")
        assert run_advance(run_id=run.pk, worker="history") == Run.Status.RESOLVED

    status, queries = _run_counted(standard_ticket)

    assert status == Run.Status.RESOLVED
    assert statements(queries) == _statements_expected(STATEMENTS)


def test_the_fewer_writes_keep_every_safeguard(standard_ticket):
    run_advance(run_id=standard_ticket.pk, worker="hot-path")
    run = Run.objects.get(pk=standard_ticket.pk)

    # Each side effect has its ledger row, counted once, completed after the call.
    effects = Effect.objects.filter(run=run).order_by("created_at")
    assert [(e.tool, e.status, e.attempts) for e in effects] == [
        ("issue_refund", Effect.Status.SUCCEEDED, 1),
        ("send_reply", Effect.Status.SUCCEEDED, 1),
    ]
    # Every step is traced once, and nothing is left open.
    kinds = sorted(run.spans.values_list("kind", flat=True))
    assert kinds.count("model") == 4
    assert kinds.count("tool") == 3  # lookup_order, issue_refund, send_reply
    assert kinds.count("validate") == 3 and kinds.count("policy") == 2
    assert not run.spans.filter(status=Span.Status.STARTED).exists()
    # The read tool's answer, saved with the next step, is in the conversation.
    assert run.step_count == 7 and run.model_calls == 4
    answered = [
        block["tool_use_id"]
        for message in run.messages
        if message["role"] == "user" and isinstance(message["content"], list)
        for block in message["content"]
        if block.get("type") == "tool_result" and not block.get("is_error")
    ]
    assert len(answered) == 3


def test_the_model_spans_hold_each_message_of_the_conversation_once(standard_ticket):
    run_advance(run_id=standard_ticket.pk, worker="hot-path")
    run = Run.objects.get(pk=standard_ticket.pk)

    assert conversation_of_spans(run) == run.messages
    # Each turn is a row, written once, in order.
    assert list(run.turns.values_list("seq", flat=True)) == list(range(len(run.messages)))


def test_every_model_step_is_saved_before_the_next_call_is_made(standard_ticket, monkeypatch):
    """A step that asks for tools waits for the run's next write (the ledger row's, for
    a side effect), but never past the next model call: a crash repeats one call."""
    from agentops.runtime import loop

    saved_at_call = []
    real = loop.get_model_client

    def client_that_looks(model):
        client = real(model)

        class Looking:
            def create(self, **kwargs):
                run = Run.objects.get(pk=standard_ticket.pk)
                saved_at_call.append((run.model_calls, run.spans.filter(kind="model").count()))
                return client.create(**kwargs)

        return Looking()

    monkeypatch.setattr(loop, "get_model_client", client_that_looks)
    assert run_advance(run_id=standard_ticket.pk, worker="hot-path") == Run.Status.RESOLVED

    assert saved_at_call == [(0, 0), (1, 1), (2, 2), (3, 3)]


def test_a_key_inserted_between_the_ledger_read_and_insert_is_read_again(
    standard_ticket, monkeypatch
):
    """A refund whose check passed is inserted without a read of its ledger row and
    without a savepoint. Another run inserting the same key in between voids the
    transaction; it is run again, reads the other run's row and pays nothing."""
    from agentops.runtime import loop
    from agentops.simgateway.models import ProviderRefund

    evaluate = loop.policy_evaluate_call
    raced = []

    def evaluate_then_lose_the_race(*, tool, resolved, run):
        # Between the refund's check and our insert: the other run's row lands.
        if tool == "issue_refund" and not raced:
            raced.append(refund_in_ledger(run=run, resolved=resolved, refund_id="re_other_run"))
        return evaluate(tool=tool, resolved=resolved, run=run)

    monkeypatch.setattr(loop, "policy_evaluate_call", evaluate_then_lose_the_race)

    status = run_advance(run_id=standard_ticket.pk, worker="second")
    standard_ticket.refresh_from_db()
    assert status == Run.Status.RESOLVED, standard_ticket.outcome_reason
    assert len(raced) == 1
    assert not ProviderRefund.objects.exists()  # the other run's refund is not paid again
    assert Effect.objects.filter(tool="issue_refund").count() == 1
    answered = standard_ticket.spans.get(kind="tool", name="issue_refund")
    assert answered.attributes["replayed_from_ledger"] is True
    assert answered.output["refund_id"] == "re_other_run"
    # The voided transaction's new turns were written by the one run again.
    assert conversation_of_spans(standard_ticket) == standard_ticket.messages


def test_a_save_right_after_a_renewal_keeps_the_lease_and_a_later_one_renews_it(
    standard_ticket, settings
):
    from datetime import timedelta

    from django.utils import timezone

    from agentops.runtime.loop import LEASE_RENEWAL_SLACK, Runner, _claim

    run = _claim(run_id=standard_ticket.pk, worker="lessee")
    runner = Runner(run, "lessee")
    claimed_until = run.lease_expires_at

    runner._save(step_count=1)  # within seconds of the claim: the lease stays
    assert Run.objects.get(pk=run.pk).lease_expires_at == claimed_until

    older = timezone.now() + timedelta(seconds=settings.RUN_LEASE_SECONDS) - LEASE_RENEWAL_SLACK
    Run.objects.filter(pk=run.pk).update(lease_expires_at=older - timedelta(seconds=1))
    run.lease_expires_at = older - timedelta(seconds=1)
    runner._save(step_count=2)
    assert Run.objects.get(pk=run.pk).lease_expires_at > claimed_until
    assert Run.objects.get(pk=run.pk).step_count == 2


def test_a_short_lease_is_renewed_once_half_of_it_is_gone(standard_ticket, settings):
    """A lease shorter than twice the slack (tests, chaos) never runs out under a live worker."""
    from datetime import timedelta

    from django.utils import timezone

    from agentops.runtime.loop import Runner, _claim

    settings.RUN_LEASE_SECONDS = 4
    run = _claim(run_id=standard_ticket.pk, worker="lessee")
    runner = Runner(run, "lessee")
    half_gone = timezone.now() + timedelta(seconds=1.9)  # 1.9 s of 4 left, none expired
    Run.objects.filter(pk=run.pk).update(lease_expires_at=half_gone)
    run.lease_expires_at = half_gone

    runner._save(step_count=1)

    renewed = Run.objects.get(pk=run.pk).lease_expires_at
    assert renewed - timezone.now() > timedelta(seconds=3)


def _seq_scans() -> dict[str, int]:
    """Sequential scans of the hot tables in this transaction so far (PostgreSQL)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, seq_scan FROM pg_stat_xact_user_tables WHERE relname = ANY(%s)",
            [["agentops_run", "agentops_effect", "traces_span"]],
        )
        return dict(cursor.fetchall())


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's statistics")
def test_the_standard_ticket_scans_no_hot_table(warm_process, standard_ticket):
    # Each grows with every ticket: a lookup that no index serves reads them whole at
    # every step (the root span's, by its span id alone, did for a while). Tables this
    # small are cheaper to scan, so the planner is told to scan only for want of an index,
    # and to plan the statements prepared before (by the warm-up) again, under that rule.
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL plan_cache_mode = force_custom_plan")
    before = _seq_scans()

    assert run_advance(run_id=standard_ticket.pk, worker="hot-path") == Run.Status.RESOLVED

    assert _seq_scans() == before
