"""Triage routing, model prices and budget caps, at their boundaries."""

import json
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from agentops.integrations.errors import ProviderUnavailable
from agentops.models import Run
from agentops.routing.models import DailySpend, ModelPrice, Route
from agentops.runtime import loop
from agentops.runtime.budget import budget_check, day_spend, spend_record
from agentops.runtime.pricing import model_cost
from agentops.runtime.triage import route_choose
from tests.runtime.conftest import text, tool_use
from tests.runtime.helpers import advance
from traces.models import Span
from traces.payloads import span_output, span_unreadable

pytestmark = pytest.mark.django_db


@pytest.fixture
def with_key(settings):
    settings.ANTHROPIC_API_KEY = "sk-ant-test"
    settings.AGENT_MODEL = "claude-sonnet-4-6"


# --- routing -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ambiguous", "amount", "model", "route"),
    [
        (False, None, "claude-sonnet-4-6", "Everything else"),
        (False, 19999, "claude-sonnet-4-6", "Everything else"),
        (False, 20000, "claude-opus-4-6", "High-value refunds"),
        (True, 100, "claude-opus-4-6", "Ambiguous tickets"),
    ],
)
def test_the_seeded_route_table_sends_only_ambiguous_or_high_value_tickets_to_the_big_model(
    with_key, ambiguous, amount, model, route
):
    chosen, name, reason = route_choose(intent="refund", ambiguous=ambiguous, amount_cents=amount)
    assert (chosen, name) == (model, route)
    assert route in reason and model in reason


def test_a_disabled_route_is_skipped_and_priority_decides(with_key):
    Route.objects.filter(name="Ambiguous tickets").update(enabled=False)
    Route.objects.create(name="Questions", priority=1, intent="question", model="claude-haiku-4-5")

    assert route_choose(intent="refund", ambiguous=True, amount_cents=None)[0] == (
        "claude-sonnet-4-6"
    )
    assert route_choose(intent="question", ambiguous=True, amount_cents=None)[1] == "Questions"


def test_no_matching_route_runs_the_agent_model(with_key, settings):
    Route.objects.all().delete()
    settings.AGENT_MODEL = "claude-sonnet-4-5-20250929"
    model, name, reason = route_choose(intent="refund", ambiguous=False, amount_cents=None)
    assert (model, name) == ("claude-sonnet-4-5-20250929", "")
    assert "no route matched" in reason


def test_without_a_key_the_offline_model_runs_and_the_decision_says_why(settings):
    settings.ANTHROPIC_API_KEY = ""
    settings.AGENT_MODEL = "offline"
    model, name, reason = route_choose(intent="refund", ambiguous=True, amount_cents=None)
    assert (model, name) == ("offline", "Ambiguous tickets")
    assert "claude-opus-4-6" in reason and "no ANTHROPIC_API_KEY" in reason


def test_the_triage_span_holds_the_decision_and_its_reason(make_order, submit):
    order = make_order(total_cents=25000)
    run = advance(submit(f"Refund {order.order_id} please"))

    triage = run.spans.get(kind="triage")
    decided = span_output(triage)  # the run's triage, as the trace shows it
    assert triage.model == "offline"
    assert decided["intent"] == "refund" and decided["ambiguous"] is False
    assert decided["amount_at_stake_cents"] == 25000  # from the order, none was named
    assert decided["route"] == "High-value refunds"
    assert "High-value refunds" in decided["reason"]
    assert run.triage["route_model"] == run.model == "offline"


def test_a_failing_triage_model_falls_back_to_rules_and_loses_nothing(
    submit, monkeypatch, settings
):
    settings.RETRY_MAX_ATTEMPTS = 2

    class Down:
        def create(self, **kwargs):
            raise ProviderUnavailable("overloaded", status_code=529)

    monkeypatch.setattr("agentops.runtime.triage.get_model_client", lambda name: Down())
    run = advance(submit("Where is my parcel?"))

    triage = run.spans.get(kind="triage")
    decided = span_output(triage)  # the run's triage, as the trace shows it
    assert decided["classified_by"] == "rules"
    assert "triage model failed" in decided["reason"]
    assert run.status == Run.Status.RESOLVED, run.outcome_reason


# --- prices --------------------------------------------------------------------


def test_costs_come_from_the_admins_price_table_by_longest_prefix():
    usage = {"input_tokens": 1_000_000, "output_tokens": 0}
    assert model_cost("claude-sonnet-4-5-20250929", usage) == Decimal("3")
    ModelPrice.objects.create(
        model="claude-sonnet-4-5-2025", input_per_mtok=Decimal("2"), output_per_mtok=0
    )
    assert model_cost("claude-sonnet-4-5-20250929", usage) == Decimal("2")
    assert model_cost("offline", usage) == Decimal("0")
    assert model_cost("unpriced-model", usage) == Decimal("0")


def test_every_kind_of_token_is_priced():
    usage = {
        "input_tokens": 1000,
        "output_tokens": 1000,
        "cache_read_input_tokens": 1000,
        "cache_creation_input_tokens": 1000,
    }
    # haiku 4.5: 1 + 5 + 0.10 + 1.25 dollars per MTok
    assert model_cost("claude-haiku-4-5", usage) == Decimal("0.007350")


# --- budget caps -------------------------------------------------------------------


def _priced_scripted(settings):
    ModelPrice.objects.create(
        model="scripted", input_per_mtok=Decimal("1000"), output_per_mtok=Decimal("1000")
    )
    settings.AGENT_MODEL = "scripted"


def test_a_run_under_its_token_cap_may_call_and_at_it_may_not(submit, settings):
    run = submit("hello")
    settings.RUN_MAX_TOKENS = 100
    run.input_tokens, run.output_tokens = 60, 39
    assert budget_check(run=run) is None
    run.output_tokens = 40
    exceeded = budget_check(run=run)
    assert exceeded.cap == "run_tokens" and "100 tokens of its 100" in exceeded.reason


def test_a_run_under_its_money_cap_may_call_and_at_it_may_not(submit, settings):
    run = submit("hello")
    settings.RUN_MAX_COST_USD = Decimal("0.50")
    run.cost = Decimal("0.499999")
    assert budget_check(run=run) is None
    run.cost = Decimal("0.500000")
    assert budget_check(run=run).cap == "run_cost"


def test_a_cap_of_zero_is_off(submit, settings):
    run = submit("hello")
    settings.RUN_MAX_TOKENS = 0
    settings.RUN_MAX_COST_USD = Decimal(0)
    settings.DAILY_MAX_COST_USD = Decimal(0)
    run.input_tokens, run.cost = 10**9, Decimal(10**6)
    assert budget_check(run=run) is None


def test_the_daily_cap_counts_what_every_run_spent_today(submit, settings):
    now = timezone.now()
    spend_record(cost=Decimal("2.00"))
    spend_record(cost=Decimal("2.99"))
    spend_record(cost=Decimal("100"), day=(now - timedelta(days=1)).date())
    settings.DAILY_MAX_COST_USD = Decimal("5.00")
    run = submit("second")
    assert day_spend() == Decimal("4.99")
    assert budget_check(run=run) is None

    spend_record(cost=Decimal("0.01"))

    exceeded = budget_check(run=run)
    assert exceeded.cap == "daily_cost" and "$5.0000 spent today" in exceeded.reason


def test_free_calls_write_no_spend(db):
    spend_record(cost=Decimal(0))
    assert not DailySpend.objects.exists()


def test_priced_runs_add_exactly_their_model_and_triage_spans_to_the_day(
    scripted, submit, settings
):
    _priced_scripted(settings)
    scripted(
        [tool_use("send_reply", {"body": "We are looking into it."}, "r1")],
        [text("done")],
    )
    first = advance(submit("hello"))
    scripted([tool_use("send_reply", {"body": "Thanks."}, "r2")], [text("done")])
    second = advance(submit("again"))

    spans = Span.objects.filter(run__in=[first, second], kind__in=["model", "triage"])
    assert day_spend() == sum(s.cost for s in spans) > 0


def test_hitting_the_run_money_cap_escalates_before_the_next_model_call(scripted, submit, settings):
    _priced_scripted(settings)
    # Each scripted call: 10 input + 5 output tokens at $1000/MTok = $0.015.
    settings.RUN_MAX_COST_USD = Decimal("0.030")
    model = scripted(
        [tool_use("find_orders", {"customer_email": "ada@example.com"}, "f1")],
        [tool_use("find_orders", {"customer_email": "ada@example.com"}, "f2")],
        [text("never asked")],
    )
    run = advance(submit("hello"))

    assert run.status == Run.Status.ESCALATED
    assert run.outcome_reason.startswith("Budget cap reached: this run spent $0.0300")
    assert len(model.calls) == 2 and model.responses == [[text("never asked")]]
    budget = run.spans.get(name="budget")
    assert budget.error_class == "budget" and budget.output["cap"] == "run_cost"
    assert run.spans.get(kind="run").error_class == "budget"
    # The last answer never reached a model turn: its span reads it from the run's
    # tool_results, written with it when the run ended.
    last = run.spans.get(kind=Span.Kind.TOOL, name="find_orders", step=2)
    last.run = run
    assert last.output == {"tool_result": "f2"}
    assert [b["tool_use_id"] for b in run.tool_results] == ["f2"]
    assert span_output(last) == json.loads(run.tool_results[0]["content"])
    assert not [s for s in run.spans.select_related("run__ticket") if span_unreadable(s)]


def test_a_runs_own_spend_counts_at_its_next_check_against_the_daily_cap(
    scripted, submit, settings
):
    # The check takes the day's spend as the run's last save read it, after that
    # transaction recorded the call's cost: the run's own spend is never missed.
    _priced_scripted(settings)
    settings.DAILY_MAX_COST_USD = Decimal("0.030")  # two calls of $0.015
    model = scripted(
        [tool_use("find_orders", {"customer_email": "ada@example.com"}, "f1")],
        [tool_use("find_orders", {"customer_email": "ada@example.com"}, "f2")],
        [text("never asked")],
    )
    run = advance(submit("hello"))

    assert run.status == Run.Status.ESCALATED
    assert "$0.0300 spent today of the daily $0.0300" in run.outcome_reason
    assert len(model.calls) == 2 and day_spend() == Decimal("0.030")


def test_spend_of_other_runs_is_read_again_once_the_runs_reading_is_old(
    scripted, submit, settings, monkeypatch
):
    # Another run spends the day's budget while this one runs a tool: a reading older
    # than DAY_SPEND_FRESH_SECONDS is not taken, the check reads the day again.
    monkeypatch.setattr(loop, "DAY_SPEND_FRESH_SECONDS", 0)
    settings.DAILY_MAX_COST_USD = Decimal("1.00")
    model = scripted(
        [tool_use("find_orders", {"customer_email": "ada@example.com"}, "f1")],
        [text("never asked")],
    )
    find_orders = loop.TOOLS["find_orders"]

    def spend_elsewhere(*args, **kwargs):
        spend_record(cost=Decimal("1.00"))
        return find_orders.execute(*args, **kwargs)

    monkeypatch.setitem(loop.TOOLS, "find_orders", replace(find_orders, execute=spend_elsewhere))
    run = advance(submit("hello"))

    assert run.status == Run.Status.ESCALATED
    assert "$1.0000 spent today of the daily $1.0000" in run.outcome_reason
    assert len(model.calls) == 1


def test_a_spent_day_escalates_a_new_run_with_the_reason(scripted, submit, settings):
    settings.DAILY_MAX_COST_USD = Decimal("1.00")
    spend_record(cost=Decimal("1.00"))
    model = scripted([text("never asked")])
    run = advance(submit("hello"))

    assert run.status == Run.Status.ESCALATED
    assert "spent today of the daily $1.0000" in run.outcome_reason
    assert model.calls == []
    triage = run.spans.get(kind="triage")
    decided = span_output(triage)  # the run's triage, as the trace shows it
    assert decided["classified_by"] == "rules" and "no triage model call" in (decided["reason"])
