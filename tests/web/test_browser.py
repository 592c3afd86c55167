"""The approvals queue in a real (headless) Chromium against a live server."""

import re

import pytest
from playwright.sync_api import Page, expect

from agentops.models import Run
from approvals.models import PendingAction
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def log_in(page: Page, user, *, goto: str = "/approvals/") -> None:
    page.goto(goto)
    expect(page).to_have_url(re.compile(r"/login/\?next="))
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(re.escape(goto) + "$"))
    # Buttons only speak htmx once the deferred script has run.
    page.wait_for_function("() => window.htmx !== undefined")


def mark_page(page: Page) -> None:
    """A marker that a full page load would wipe out."""
    page.evaluate("() => { window.__sameDocument = true }")


def still_same_page(page: Page) -> bool:
    return page.evaluate("() => window.__sameDocument === true")


def test_it_approves_a_refund_in_place_and_the_badge_drops(
    page: Page, support_lead, awaiting, enqueued_runs
):
    log_in(page, support_lead)
    badge = page.locator("#nav-pending")
    expect(badge).to_have_text("1")
    card = page.locator(f"#action-{awaiting.code}")
    expect(card).to_contain_text("$129.00")
    expect(card).to_contain_text("dana@example.com")
    expect(card).to_contain_text("amount_over_threshold")
    mark_page(page)

    card.get_by_role("button", name="Approve $129.00").click()

    expect(card).to_contain_text("Approved")
    expect(card).to_contain_text("by lead")
    expect(card.get_by_role("button", name=re.compile("Approve"))).to_have_count(0)
    expect(badge).to_have_text("0")
    expect(page.locator("#recent")).to_contain_text("dana@example.com")
    assert still_same_page(page)

    awaiting.refresh_from_db()
    assert awaiting.status == PendingAction.Status.APPROVED
    assert Run.objects.get(pk=awaiting.run_id).status == Run.Status.QUEUED
    assert enqueued_runs == [awaiting.run_id]


def test_it_rejects_with_a_reason_in_place(page: Page, support_lead, awaiting, enqueued_runs):
    log_in(page, support_lead)
    card = page.locator(f"#action-{awaiting.code}")
    mark_page(page)

    card.get_by_label("Reason for rejecting").fill("Outside the 30-day window")
    card.get_by_role("button", name="Reject").click()

    expect(card).to_contain_text("Rejected")
    expect(card).to_contain_text("Outside the 30-day window")
    expect(page.locator("#nav-pending")).to_have_text("0")
    assert still_same_page(page)

    awaiting.refresh_from_db()
    assert awaiting.status == PendingAction.Status.REJECTED
    assert awaiting.reason == "Outside the 30-day window"
    assert enqueued_runs == [awaiting.run_id]


def test_it_shows_staff_without_the_permission_no_buttons(page: Page, staff_viewer, awaiting):
    log_in(page, staff_viewer)
    card = page.locator(f"#action-{awaiting.code}")
    expect(card).to_contain_text("$129.00")
    expect(card).to_contain_text("can see this queue but not decide")
    expect(card.get_by_role("button")).to_have_count(0)
    expect(page.locator("#nav-pending")).to_have_text("1")


def test_it_updates_a_run_page_while_the_run_moves_and_then_stops_polling(
    page: Page, support_lead, make_run
):
    run = make_run(Run.Status.RUNNING, subject="Where is my parcel?")
    log_in(page, support_lead, goto=f"/runs/{run.code}/")
    live = page.locator("#run-live")
    expect(live).to_have_attribute("data-status", "running")
    mark_page(page)

    Run.objects.filter(pk=run.pk).update(status=Run.Status.RESOLVED, reply="It arrives Friday.")

    expect(live).to_have_attribute("data-status", "resolved", timeout=8_000)
    expect(live).to_contain_text("It arrives Friday.")
    expect(live).not_to_have_attribute("hx-trigger", re.compile("every"))
    assert still_same_page(page)


def test_it_keeps_the_action_pending_when_a_rejection_has_only_blanks(
    page: Page, support_lead, awaiting, enqueued_runs
):
    log_in(page, support_lead)
    card = page.locator(f"#action-{awaiting.code}")
    mark_page(page)

    card.get_by_label("Reason for rejecting").fill("   ")
    card.get_by_role("button", name="Reject").click()

    expect(card.get_by_role("alert")).to_contain_text("Say why the action is rejected")
    expect(card.get_by_role("button", name="Approve $129.00")).to_be_visible()
    expect(page.locator("#nav-pending")).to_have_text("1")
    assert still_same_page(page)
    awaiting.refresh_from_db()
    assert awaiting.status == PendingAction.Status.PENDING
    assert enqueued_runs == []


def test_it_filters_runs_in_place_and_puts_the_filter_in_the_address(
    page: Page, support_lead, make_run
):
    make_run(Run.Status.RESOLVED, subject="Resolved ticket")
    make_run(Run.Status.ESCALATED, subject="Escalated ticket")
    log_in(page, support_lead, goto="/runs/")
    table = page.locator("#runs-table")
    expect(table).to_contain_text("Resolved ticket")
    mark_page(page)

    table.get_by_role("link", name="Escalated", exact=True).click()

    expect(page).to_have_url(re.compile(r"/\?status=escalated$"))
    expect(table).to_contain_text("Escalated ticket")
    expect(table).not_to_contain_text("Resolved ticket")
    expect(table.get_by_role("link", name="Escalated", exact=True)).to_have_class(
        re.compile("is-active")
    )
    assert still_same_page(page)
