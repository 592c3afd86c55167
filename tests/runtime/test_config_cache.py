"""The admin's tables kept per process: one token read a task, a change from the next task on.

Whatever writes the change (the admin, .update(), a fixture, raw SQL that empties a
table, a migration) and even if it is rolled back, the next task reads what is
committed now. Runs on SQLite and PostgreSQL.
"""

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.management import call_command
from django.core.management.sql import emit_post_migrate_signal
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from agentops.db.config_token import (
    TRACKED_TABLES,
    config_triggers_drop,
    config_triggers_installed,
)
from agentops.models import ConfigToken, PromptVersion, Run
from agentops.routing.models import ModelPrice, Route
from agentops.runtime import config_cache
from agentops.runtime.config_cache import (
    MAX_ENTRIES,
    TOKEN_SQL,
    config_generation,
    config_token_column,
    config_token_parse,
    config_token_read,
)
from agentops.runtime.loop import run_advance
from agentops.runtime.pricing import model_price
from agentops.runtime.prompts import prompt_current
from agentops.runtime.readonce import once, read_once
from agentops.runtime.triage import route_choose
from agentops.tasks import advance_run
from approvals.models import AutonomySetting, PolicyChange, RiskPolicy
from approvals.policy import policy_for, policy_version_in_force
from evals.models import ShadowSetting

pytestmark = pytest.mark.django_db


def _advance(run: Run) -> str:
    return run_advance(run_id=run.pk, worker="config")


def _task[T](read) -> T:
    with read_once():
        return read()


def _offline_input_price():
    return _task(lambda: model_price("offline").input_per_mtok)


def _route_name() -> str:
    return _task(lambda: route_choose(intent="refund", ambiguous=True, amount_cents=None)[1])


def test_a_warm_task_takes_the_token_with_its_run_and_reads_none_of_the_tables(refund_ticket):
    _advance(refund_ticket())  # reads the tables under today's token

    with CaptureQueriesContext(connection) as queries:
        assert _advance(refund_ticket()) == Run.Status.RESOLVED

    sql = [q["sql"] for q in queries.captured_queries]
    # The token comes with the claimed run's row: no read of its own.
    assert sql.count(TOKEN_SQL) == 0
    assert len([s for s in sql if TOKEN_SQL in s]) == 1
    # (The claim joins the run's own prompt version: a version a run used never changes.)
    assert not [s for s in sql for table in TRACKED_TABLES if f'FROM "{table}"' in s]


def test_the_run_task_and_its_shadow_check_share_the_claims_token(refund_ticket):
    ShadowSetting.objects.create(pk=1, enabled=False, share_percent=100)
    advance_run.run(refund_ticket().pk)  # the task's body, as a worker runs it

    with CaptureQueriesContext(connection) as queries:
        advance_run.run(refund_ticket().pk)

    sql = [q["sql"] for q in queries.captured_queries]
    assert sql.count(TOKEN_SQL) == 0  # it came with the claimed run
    assert len([s for s in sql if TOKEN_SQL in s]) == 1
    assert not [s for s in sql if 'FROM "evals_shadowsetting"' in s]


def test_a_change_in_the_admin_applies_from_the_next_task(client, admin_user, refund_ticket):
    assert _advance(refund_ticket()) == Run.Status.RESOLVED

    client.force_login(admin_user)
    response = client.post(reverse("admin:approvals_autonomysetting_add"), {"share_percent": 0})
    assert response.status_code == 302, response.content

    run = refund_ticket()
    assert _advance(run) == Run.Status.ESCALATED
    run.refresh_from_db()
    assert "autonomy share" in run.outcome_reason


def test_an_update_applies_from_the_next_task_and_not_within_one():
    with read_once():
        before = model_price("offline").input_per_mtok
        ModelPrice.objects.filter(model="offline").update(input_per_mtok=before + 7)
        assert model_price("offline").input_per_mtok == before  # one task, one reading

    assert _offline_input_price() == before + 7


def test_every_table_the_loop_keeps_is_read_anew_after_a_write():
    assert _route_name() == "Ambiguous tickets"
    assert _task(prompt_current) is None
    assert _task(lambda: policy_for(tool="issue_refund", currency="USD")) is None

    Route.objects.filter(name="Ambiguous tickets").update(enabled=False)
    PromptVersion.objects.bulk_create(
        [PromptVersion(name="v2", system_prompt="Hi", is_current=True)]
    )
    policy = RiskPolicy.objects.create(tool="issue_refund", currency="USD")

    assert _route_name() == "Everything else"
    assert _task(prompt_current).name == "v2"
    assert _task(lambda: policy_for(tool="issue_refund", currency="USD")) == policy
    assert _task(lambda: policy_version_in_force(policy)) is None
    change = PolicyChange.objects.create(
        subject="risk_policy", policy=policy, label="x", version=1, new={}
    )
    assert _task(lambda: policy_version_in_force(policy)) == change


def test_a_rolled_back_change_is_not_taken_for_a_later_different_one():
    """A counter would give the later change the rolled-back change's number, and the
    process would keep the threshold it read inside the rolled-back transaction."""
    with transaction.atomic():
        RiskPolicy.objects.create(tool="issue_refund", currency="USD", approval_threshold_cents=100)
        seen = _task(lambda: policy_for(tool="issue_refund", currency="USD"))
        assert seen.approval_threshold_cents == 100
        transaction.set_rollback(True)

    RiskPolicy.objects.create(tool="issue_refund", currency="USD", approval_threshold_cents=200)

    seen = _task(lambda: policy_for(tool="issue_refund", currency="USD"))
    assert seen.approval_threshold_cents == 200


def test_a_rolled_back_change_leaves_the_tables_as_they_were(refund_ticket):
    with transaction.atomic():
        AutonomySetting.objects.create(pk=1, share_percent=0)
        assert _advance(refund_ticket()) == Run.Status.ESCALATED
        transaction.set_rollback(True)

    assert _advance(refund_ticket()) == Run.Status.RESOLVED


def test_a_fixture_applies_from_the_next_task(tmp_path):
    before = _offline_input_price()
    price = ModelPrice.objects.get(model="offline")
    fixture = tmp_path / "prices.json"
    fields = {
        "model": "offline",
        "input_per_mtok": str(before + 3),
        "output_per_mtok": "0",
        "updated_at": price.updated_at.isoformat(),
    }
    fixture.write_text(
        json.dumps([{"model": "routing.modelprice", "pk": price.pk, "fields": fields}])
    )

    call_command("loaddata", str(fixture), verbosity=0)

    assert _offline_input_price() == before + 3


def test_emptying_a_table_in_one_statement_applies_from_the_next_task():
    assert _offline_input_price() is not None
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("TRUNCATE routing_modelprice")
        else:  # SQLite's truncate optimisation is off for a table with triggers
            cursor.execute("DELETE FROM routing_modelprice")

    assert _task(lambda: model_price("offline")) is None


@pytest.mark.django_db(transaction=True)
def test_a_change_committed_by_another_connection_applies_from_the_next_task():
    assert _task(lambda: policy_for(tool="send_reply", currency="")) is None

    def elsewhere():
        try:
            RiskPolicy.objects.create(tool="send_reply", currency="", approval_threshold_cents=1)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(elsewhere).result()

    assert _task(lambda: policy_for(tool="send_reply", currency="")).approval_threshold_cents == 1


def test_the_token_can_ride_on_another_query_and_then_costs_no_read_of_its_own(refund_ticket):
    run = refund_ticket()
    claimed = Run.objects.annotate(config_token=config_token_column()).get(pk=run.pk)
    assert claimed.config_token == config_token_read()
    _task(prompt_current)  # this token's generation holds the current prompt

    token = config_token_parse(claimed.config_token)
    with CaptureQueriesContext(connection) as queries, read_once(config_token=token):
        assert prompt_current() is None

    assert queries.captured_queries == []


def test_every_kept_table_has_its_triggers():
    kept = {
        PromptVersion,
        AutonomySetting,
        PolicyChange,
        RiskPolicy,
        ModelPrice,
        Route,
        ShadowSetting,
    }
    assert set(TRACKED_TABLES) == {model._meta.db_table for model in kept}
    assert config_triggers_installed(connection) == set(TRACKED_TABLES)


def test_migrate_installs_the_triggers_again_and_replaces_the_token():
    """SQLite drops a table's triggers when a migration rebuilds the table."""
    config_triggers_drop(connection)
    assert config_triggers_installed(connection) == set()
    before = config_token_read()

    emit_post_migrate_signal(verbosity=0, interactive=False, db=connection.alias)

    assert config_triggers_installed(connection) == set(TRACKED_TABLES)
    assert config_token_read() not in (None, before)


def test_without_a_token_nothing_is_kept_until_the_next_write():
    ConfigToken.objects.all().delete()  # what a flush leaves
    loads = []

    def load():
        loads.append(1)
        return len(loads)

    assert (_task(lambda: once("no-token", load)), _task(lambda: once("no-token", load))) == (1, 2)

    Route.objects.filter(name="Everything else").update(priority=100)  # any write: a new token
    assert config_token_read() is not None
    assert (_task(lambda: once("no-token", load)), _task(lambda: once("no-token", load))) == (3, 3)


def test_a_process_keeps_one_generation_of_a_bounded_size():
    first = config_generation("token-a")
    assert config_generation("token-a") is first
    second = config_generation("token-b")
    assert second is not first and config_cache._current is second  # the first is dropped
    assert config_generation("token-a") is not first  # and not found again
    assert config_generation(None) is not config_generation(None)  # no token: the task's own

    generation = config_generation("token-c")
    for n in range(MAX_ENTRIES + 10):
        generation.get(f"name-{n}", lambda n=n: n)
    assert len(generation) == MAX_ENTRIES
    loads = []
    generation.get("one-too-many", lambda: loads.append(1))
    generation.get("one-too-many", lambda: loads.append(1))
    assert len(loads) == 2  # past the bound, read every time
