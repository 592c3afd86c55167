"""Admin tables read once per task of the loop: changes apply from the next task on.

How they are kept between tasks (the config token) is tested in test_config_cache.
"""

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agentops.routing.models import ModelPrice
from agentops.runtime.config_cache import TOKEN_SQL, config_token_read
from agentops.runtime.readonce import once, read_once
from approvals.models import RiskPolicy
from approvals.policy import policy_for


@pytest.mark.django_db
def test_once_loads_every_time_outside_the_block_and_once_per_token_inside():
    name = f"t-{uuid.uuid4()}"  # the process keeps what it loads: a name of its own
    loads = []

    def load():
        loads.append(1)
        return len(loads)

    assert (once(name, load), once(name, load)) == (1, 2)
    with read_once():
        assert (once(name, load), once(name, load)) == (3, 3)
    with read_once():  # the next task, no write since: kept
        assert once(name, load) == 3
    assert once(name, load) == 4  # outside a task: read every time
    ModelPrice.objects.filter(model="offline").update(input_per_mtok=0)  # any write
    with read_once():
        assert once(name, load) == 5


@pytest.mark.django_db
def test_a_block_inside_another_is_the_same_task():
    name = f"t-{uuid.uuid4()}"
    with read_once(), CaptureQueriesContext(connection) as queries:
        assert once(name, lambda: 1) == 1
        with read_once():
            ModelPrice.objects.filter(model="offline").update(input_per_mtok=0)
            assert once(name, lambda: 2) == 1
    assert [q["sql"] for q in queries.captured_queries].count(TOKEN_SQL) == 1


@pytest.mark.django_db
def test_a_block_inside_another_hands_it_the_token_it_was_given():
    name = f"t-{uuid.uuid4()}"
    with read_once():  # a process that read `name` under today's token
        assert once(name, lambda: 1) == 1
    today = config_token_read()

    # The Celery task's block, then run_advance's with the token read by the claim.
    with CaptureQueriesContext(connection) as queries, read_once(), read_once(config_token=today):
        assert once(name, lambda: 2) == 1
    assert queries.captured_queries == []


@pytest.mark.django_db
def test_risk_policies_are_read_once_per_task_and_anew_in_the_next():
    RiskPolicy.objects.create(tool="issue_refund", currency="USD", approval_threshold_cents=100)
    with read_once(), CaptureQueriesContext(connection) as queries:
        assert policy_for(tool="issue_refund", currency="usd").approval_threshold_cents == 100
        assert policy_for(tool="send_reply", currency="USD") is None
        RiskPolicy.objects.filter(tool="issue_refund").update(approval_threshold_cents=5)
        assert policy_for(tool="issue_refund", currency="USD").approval_threshold_cents == 100
    selects = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT")]
    assert selects[0] == TOKEN_SQL and len(selects) == 2  # the token, then the policies

    with read_once():  # the next task sees the change
        assert policy_for(tool="issue_refund", currency="USD").approval_threshold_cents == 5
    # The any-currency policy applies where no policy names the currency.
    RiskPolicy.objects.create(tool="issue_refund", currency="", approval_threshold_cents=7)
    assert policy_for(tool="issue_refund", currency="EUR").approval_threshold_cents == 7
