"""The trace browser in a real (headless) Chromium against a live server."""

import re

import pytest
from playwright.sync_api import Page, expect

from tests.web.test_browser import log_in, mark_page, still_same_page

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
