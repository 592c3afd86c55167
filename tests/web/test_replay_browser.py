"""From a failed run's trace page, replay it and land on the comparison, in headless Chromium."""

import re

import pytest
from playwright.sync_api import Page, expect

from agentops.models import Run
from tests.conftest import _user
from tests.evals.conftest import ENGINEER_PERMS, fake_engine  # noqa: F401
from tests.evals.helpers import refund_conversation
from tests.web.test_browser import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def engineer(django_user_model):
    return _user(django_user_model, "engineer", staff=True, perms=ENGINEER_PERMS)


def test_a_failed_run_is_replayed_from_its_trace_page_onto_the_comparison(
    page: Page, engineer, make_run, fake_engine  # noqa: F811
):
    failed = make_run(
        Run.Status.FAILED,
        subject="Refund failed",
        messages=refund_conversation(1999, refund_error="card_declined"),
        outcome_reason="The refund was declined.",
    )
    fake_engine.messages = refund_conversation(1999)

    log_in(page, engineer, goto=f"/runs/{failed.code}/")
    page.get_by_role("button", name="Replay exactly").click()

    replay = Run.objects.get(replay_of=failed)
    expect(page).to_have_url(re.compile(f"/runs/{replay.code}/compare/$"))
    table = page.locator("#compare-table")
    expect(table.locator('th[data-side="left"]')).to_contain_text("Original")
    expect(table.locator('th[data-side="right"]')).to_contain_text("Exact replay")
    expect(page.locator("#divergence-summary")).to_contain_text("Diverged at step 2")
    step = page.locator("#step-2")
    expect(step.locator(".divergence-mark")).to_be_visible()
    expect(step.locator('td[data-side="left"] .call')).to_contain_text("error: card_declined")
    expect(step.locator('td[data-side="right"] .call')).to_contain_text("ok")

    page.get_by_role("link", name="Original").click()  # and back to the original's trace
    expect(page).to_have_url(re.compile(f"/runs/{failed.code}/$"))
    expect(page.locator("#run-replays")).to_contain_text("Exact replay")
