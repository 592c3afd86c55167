"""The trace browser in a real (headless) Chromium against a live server."""

import re

import pytest
from playwright.sync_api import Page, expect

from agentops.models import Run
from agentops.runtime.loop import run_advance
from approvals.services import action_approve
from tests.web.test_browser import log_in, mark_page, parked_run, still_same_page
from traces.models import Span
from traces.services import root_span_id

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_it_opens_a_failed_run_from_the_list_and_expands_the_failing_span(
    page: Page, support_lead, failed_run, make_run
):
    make_run(subject="A quiet resolved run")
    run, failing = failed_run["run"], failed_run["attempts"][1]
    log_in(page, support_lead, goto="/runs/")

    page.get_by_label("Error class").select_option("terminal")
    table = page.locator("#runs-table")
    expect(table).not_to_contain_text("A quiet resolved run")
    expect(page).to_have_url(re.compile(r"/runs/\?error_class=terminal$"))
    table.get_by_role("link", name="Refund failed").click()
    expect(page).to_have_url(re.compile(f"/runs/{run.code}/$"))
    page.wait_for_function("() => window.htmx !== undefined")
    mark_page(page)

    item = page.locator(f"#span-{failing.span_id}")
    detail = page.locator(f"#detail-{failing.span_id}")
    expect(detail).to_be_hidden()
    item.locator("a.wf-row").click()

    expect(detail).to_contain_text("Error class")
    expect(detail.locator(".error-class")).to_have_text("Terminal")
    expect(detail).to_contain_text("attempt 2 of 2")
    expect(detail.locator('[data-part="output"]')).to_contain_text("Raw tool response")
    expect(detail.locator('[data-part="output"]')).to_contain_text('"decline_code": "do_not_honor"')
    assert still_same_page(page)

    item.locator("a.wf-row").click()  # a second click folds it away
    expect(detail).to_be_hidden()
    assert still_same_page(page)


def test_a_parked_run_s_trace_shows_its_root_open_until_the_run_ends_and_writes_it(
    page: Page, support_lead, make_order, submit, enqueued_runs
):
    """The root span is written when the run ends; the page shows it open from the run
    meanwhile, opens its detail, and shows the written one once the run has ended."""
    _, run, action = parked_run(make_order, submit, enqueued_runs)
    root_id = root_span_id(run)
    assert not Span.objects.filter(run=run, kind=Span.Kind.RUN).exists()
    log_in(page, support_lead, goto=f"/runs/{run.code}/")
    page.wait_for_function("() => window.htmx !== undefined")
    mark_page(page)

    root = page.locator(f"#span-{root_id}")
    expect(root).to_have_attribute("data-status", "started")
    expect(root).to_have_attribute("data-kind", "run")
    root.locator("a.wf-row").click()
    expect(page.locator(f"#detail-{root_id}")).to_contain_text(run.ticket.subject)

    action_approve(action=action, actor=support_lead)
    assert run_advance(run_id=run.pk, worker="test-worker") == Run.Status.RESOLVED

    expect(root).to_have_attribute("data-status", "ok", timeout=8_000)
    assert Span.objects.filter(run=run, kind=Span.Kind.RUN).count() == 1
    assert still_same_page(page)
