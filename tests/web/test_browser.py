"""The approvals queue in a real (headless) Chromium against a live server."""

import re

import pytest
from playwright.sync_api import Page, expect

from agentops.models import Effect, Run
from agentops.runtime.loop import run_advance
from agentops.simgateway.models import ProviderRefund
from approvals.models import Decision, PendingAction
from tests.conftest import LEAD_LIMIT_CENTS, PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def reject_reasons():
    """The migration's reason codes: a transactional test's flush removes them."""
    from importlib import import_module

    from approvals.models import RejectReason

    reasons = import_module("approvals.migrations.0003_reject_reasons").REASONS
    for position, (code, label) in enumerate(reasons):
        RejectReason.objects.get_or_create(
            code=code, defaults={"label": label, "position": position}
        )


def log_in(page: Page, user, *, goto: str = "/approvals/") -> None:
    page.goto(goto)
    expect(page).to_have_url(re.compile(r"/login/\?next="))
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(re.escape(goto) + "$"))
    # Buttons only speak htmx, and the queue's keys only work, once the page's deferred
    # scripts have run: all of them have when DOMContentLoaded fires. (Waiting for htmx
    # alone let a key press land before approvals.js, deferred after it, had run.)
    page.wait_for_load_state("domcontentloaded")
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

    card.get_by_label("Reason code").select_option("over_policy")
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

    card.get_by_label("Reason code").select_option("needs_info")
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


# --- a real run, parked by the policy and resumed in-process after the decision ---------


def parked_run(make_order, submit, enqueued, *, total_cents=12900):
    order = make_order(total_cents=total_cents, email="dana@example.com")
    run = submit(f"I want a refund for {order.order_id}, it broke.", email="dana@example.com")
    assert run_advance(run_id=run.pk, worker="test-worker") == Run.Status.AWAITING_APPROVAL
    enqueued.clear()  # the intake's enqueue; what follows is the decision's
    return order, run, PendingAction.objects.get(run=run)


def test_a_lead_opens_an_action_approves_it_and_the_run_refunds_once(
    page: Page, support_lead, make_order, submit, enqueued_runs
):
    order, run, action = parked_run(make_order, submit, enqueued_runs)
    log_in(page, support_lead)
    card = page.locator(f"#action-{action.code}")
    expect(card).to_contain_text("approval_threshold")
    card.get_by_role("link", name="details →").click()

    expect(page).to_have_url(re.compile(f"/approvals/{action.code}/$"))
    expect(page.locator("#customer-message")).to_contain_text("it broke")
    expect(page.locator("#order")).to_contain_text(order.order_id)
    expect(page.locator("#rules")).to_contain_text("$129.00 > approval threshold $50.00")
    page.wait_for_function("() => window.htmx !== undefined")
    page.get_by_role("button", name="Approve $129.00").click()
    expect(page.locator(f"#action-{action.code}")).to_contain_text("Approved")

    assert enqueued_runs == [run.pk]
    assert run_advance(run_id=run.pk, worker="test-worker") == Run.Status.RESOLVED
    assert run_advance(run_id=run.pk, worker="test-worker") == "not_claimed"
    page.reload()
    expect(page.locator("#decisions")).to_contain_text("Approved by lead")
    expect(page.locator("#decisions")).to_contain_text("succeeded")
    assert ProviderRefund.objects.filter(payment_ref=order.payment_ref).count() == 1
    assert Effect.objects.filter(run=run, tool="issue_refund").count() == 1
    assert order.refunds.count() == 1


def test_a_lead_rejects_with_a_reason_code_and_the_customer_is_told(
    page: Page, support_lead, make_order, submit, enqueued_runs
):
    order, run, action = parked_run(make_order, submit, enqueued_runs)
    log_in(page, support_lead)
    card = page.locator(f"#action-{action.code}")
    card.get_by_label("Reason code").select_option("suspected_fraud")
    card.get_by_label("Reason for rejecting").fill("Third claim this month")
    card.get_by_role("button", name="Reject").click()
    expect(card).to_contain_text("Rejected")
    expect(card).to_contain_text("Suspected fraud")

    assert enqueued_runs == [run.pk]
    assert run_advance(run_id=run.pk, worker="test-worker") == Run.Status.RESOLVED
    run.refresh_from_db()
    assert "unable to issue a refund" in run.reply
    assert not ProviderRefund.objects.exists()
    assert Decision.objects.get(action=action).reason_code.code == "suspected_fraud"


def test_a_lead_is_not_offered_an_approval_above_the_limit_and_the_server_refuses_it(
    page: Page, support_lead, make_order, submit, enqueued_runs
):
    _, run, action = parked_run(
        make_order, submit, enqueued_runs, total_cents=LEAD_LIMIT_CENTS + 100
    )
    log_in(page, support_lead)
    card = page.locator(f"#action-{action.code}")
    expect(card).to_contain_text("Above your approval limit ($200.00)")
    expect(card.get_by_role("button", name=re.compile("Approve"))).to_have_count(0)
    expect(card.get_by_role("button", name="Reject")).to_be_visible()

    token = page.evaluate(
        "() => JSON.parse(document.body.getAttribute('hx-headers'))['x-csrftoken']"
    )
    response = page.request.post(
        f"/approvals/{action.code}/approve", headers={"X-CSRFToken": token}, form={"reason": ""}
    )
    assert response.status == 403
    action.refresh_from_db()
    assert action.status == PendingAction.Status.PENDING
    assert enqueued_runs == []


def test_the_keyboard_moves_through_the_queue_and_approves(
    page: Page, support_lead, make_run, make_action, enqueued_runs
):
    first = make_action(make_run(Run.Status.AWAITING_APPROVAL), amount_cents=1500)
    second = make_action(make_run(Run.Status.AWAITING_APPROVAL), amount_cents=2500)
    log_in(page, support_lead)

    page.keyboard.press("j")
    expect(page.locator(f"#action-{first.code}")).to_have_class(re.compile("is-current"))
    page.keyboard.press("j")
    expect(page.locator(f"#action-{second.code}")).to_have_class(re.compile("is-current"))
    page.keyboard.press("a")

    expect(page.locator(f"#action-{second.code}")).to_contain_text("Approved")
    first.refresh_from_db()
    assert first.status == PendingAction.Status.PENDING


def test_the_queue_filters_in_place_and_puts_them_in_the_address(
    page: Page, support_lead, make_run, make_action
):
    small = make_action(make_run(Run.Status.AWAITING_APPROVAL), amount_cents=6000)
    large = make_action(make_run(Run.Status.AWAITING_APPROVAL), amount_cents=90000)
    log_in(page, support_lead)
    mark_page(page)

    page.get_by_label("Amount from").fill("100")
    page.get_by_label("Amount from").press("Enter")

    expect(page).to_have_url(re.compile(r"min_amount=100"))
    expect(page.locator(f"#action-{large.code}")).to_be_visible()
    expect(page.locator(f"#action-{small.code}")).to_have_count(0)
    assert still_same_page(page)
