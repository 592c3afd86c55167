"""Admin tables read once per task of the loop: changes apply from the next task on."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agentops.runtime.readonce import once, read_once
from approvals.models import RiskPolicy
from approvals.policy import policy_for


def test_once_loads_every_time_outside_the_block_and_once_inside():
    loads = []

    def load():
        loads.append(1)
        return len(loads)

    assert (once("t", load), once("t", load)) == (1, 2)
    with read_once():
        assert (once("t", load), once("t", load)) == (3, 3)
    assert once("t", load) == 4  # nothing kept past the block


@pytest.mark.django_db
def test_risk_policies_are_read_once_per_task_and_anew_in_the_next():
    RiskPolicy.objects.create(tool="issue_refund", currency="USD", approval_threshold_cents=100)
    with read_once(), CaptureQueriesContext(connection) as queries:
        assert policy_for(tool="issue_refund", currency="usd").approval_threshold_cents == 100
        assert policy_for(tool="send_reply", currency="USD") is None
        RiskPolicy.objects.filter(tool="issue_refund").update(approval_threshold_cents=5)
        assert policy_for(tool="issue_refund", currency="USD").approval_threshold_cents == 100
    assert sum(q["sql"].startswith("SELECT") for q in queries.captured_queries) == 1

    with read_once():  # the next task sees the change
        assert policy_for(tool="issue_refund", currency="USD").approval_threshold_cents == 5
    # The any-currency policy applies where no policy names the currency.
    RiskPolicy.objects.create(tool="issue_refund", currency="", approval_threshold_cents=7)
    assert policy_for(tool="issue_refund", currency="EUR").approval_threshold_cents == 7
