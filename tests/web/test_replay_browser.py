"""From a failed run's trace page, replay it and land on the comparison, in headless Chromium."""

import re

import pytest
from playwright.sync_api import Page, expect

from agentops.integrations.errors import ProviderRejected
from agentops.models import Run
from agentops.runtime.loop import run_advance
from tests.conftest import _user
from tests.evals.conftest import ENGINEER_PERMS
from tests.runtime.conftest import scripted, text, tool_use  # noqa: F401
from tests.web.test_browser import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def engineer(django_user_model):
    return _user(django_user_model, "engineer", staff=True, perms=ENGINEER_PERMS)


@pytest.fixture
def failed_run(make_order, submit, scripted):  # noqa: F811
    """A real run that failed: the model's second call was rejected by the provider."""
    order = make_order(total_cents=2500)
    scripted(
        [text("Looking it up."), tool_use("lookup_order", {"order_id": order.order_id})],
        ProviderRejected("prompt is too long", code="invalid_request_error"),
    )
    run = submit(f"Please refund {order.order_id}", subject="Refund failed")
    run_advance(run_id=run.pk, worker="test-worker")
    run.refresh_from_db()
    assert run.status == Run.Status.FAILED, run.outcome_reason
    return run


def test_a_failed_run_is_replayed_from_its_trace_page_onto_the_comparison(
    page: Page, engineer, failed_run
):
    log_in(page, engineer, goto=f"/runs/{failed_run.code}/")
    page.get_by_role("button", name="Replay exactly").click()

    expect(page).to_have_url(re.compile(r"/runs/[0-9a-f-]{36}/compare/$"))
    replay = Run.objects.get(replay_of=failed_run)
    assert page.url.endswith(f"/runs/{replay.code}/compare/")
    table = page.locator("#compare-table")
    expect(table.locator('th[data-side="left"]')).to_contain_text("Original")
    expect(table.locator('th[data-side="left"]')).to_contain_text("Failed")
    expect(table.locator('th[data-side="right"]')).to_contain_text("Exact replay")
    expect(table.locator('th[data-side="right"]')).to_contain_text("Failed")
    step = page.locator("#step-1")
    expect(step.locator('td[data-side="left"] .call')).to_contain_text("lookup_order")
    expect(step.locator('td[data-side="right"] .call')).to_contain_text("lookup_order")
    expect(page.locator("#divergence-summary")).to_contain_text("Same decisions all the way")
    expect(page.locator("#final")).to_contain_text("prompt is too long")

    # Both ways: from the comparison to the original's trace, which lists its replay.
    table.locator('th[data-side="left"] a').click()
    expect(page).to_have_url(re.compile(f"/runs/{failed_run.code}/$"))
    expect(page.locator("#run-replays")).to_contain_text("Exact replay")


def test_a_fork_is_followed_live_on_the_comparison_until_it_finishes(
    page: Page, engineer, make_order, submit
):
    order = make_order(total_cents=2500)
    original = submit(f"Please refund my order {order.order_id}, it arrived broken.")
    run_advance(run_id=original.pk, worker="test-worker")  # the offline model
    original.refresh_from_db()
    assert original.status == Run.Status.RESOLVED, original.outcome_reason

    log_in(page, engineer, goto=f"/runs/{original.code}/")
    page.get_by_label("Fork from step").select_option("1")
    page.get_by_label("Model").fill("offline")
    page.get_by_role("button", name="Fork from step").click()

    expect(page).to_have_url(re.compile(r"/runs/[0-9a-f-]{36}/compare/$"))
    fork = Run.objects.get(replay_of=original)
    assert (fork.mode, fork.replay_from_step, fork.dry_run) == ("fork", 1, True)
    right = page.locator('#compare-table th[data-side="right"]')
    expect(right).to_contain_text("Queued")
    expect(page.locator("#comparison")).to_have_attribute("data-both-final", "false")

    run_advance(run_id=fork.pk, worker="test-worker")  # as a worker would

    expect(right).to_contain_text("Resolved", timeout=15_000)  # the page polls
    expect(page.locator("#comparison")).to_have_attribute("data-both-final", "true")
    expect(page.locator("#divergence-summary")).to_contain_text("Same decisions all the way")
    refund = page.locator('td[data-side="right"] .call[data-tool="issue_refund"]')
    expect(refund).to_contain_text("dry_run")  # recorded, never executed
