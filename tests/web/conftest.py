"""Rows for the pages to show, and a headless Chromium for the browser tests."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import timedelta

import pytest
from django.utils import timezone

from agentops.models import Effect, Run, Ticket
from approvals.models import PendingAction
from tests.runtime.conftest import _fast_retries, make_order, submit  # noqa: F401
from traces.models import Span

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

REFUND_RULES = [
    {"rule": "amount_over_threshold", "tripped": True, "detail": "$129.00 is above $50.00"},
    {"rule": "order_delivered", "tripped": False, "detail": "delivered 3 days ago"},
]


@pytest.fixture
def make_run(db):
    """A ticket and its run, in any status, with times that make sense for it."""
    counter = iter(range(1, 10_000))

    def make(status: str = Run.Status.RESOLVED, **fields) -> Run:
        n = next(counter)
        now = timezone.now()
        ticket = Ticket.objects.create(
            customer_email=fields.pop("customer_email", f"customer{n}@example.com"),
            subject=fields.pop("subject", f"Refund for my order #{n}"),
            body=fields.pop("body", "My blender arrived broken. Please refund order ORD-10023."),
            external_id=fields.pop("external_id", None),
        )
        defaults = {
            "model": "offline",
            "trace_id": f"{n:032x}",
            "created_at": now - timedelta(minutes=5),
        }
        if status != Run.Status.QUEUED:
            defaults["started_at"] = now - timedelta(minutes=4)
        if status in Run.FINAL_STATUSES:
            defaults["finished_at"] = now - timedelta(minutes=4) + timedelta(seconds=3.5)
        defaults.update(fields)
        return Run.objects.create(ticket=ticket, status=status, **defaults)

    return make


@pytest.fixture
def make_span(db):
    counter = iter(range(1, 100_000))

    def make(run: Run, **fields) -> Span:
        n = next(counter)
        started = fields.pop("started_at", timezone.now() - timedelta(minutes=4, seconds=-n))
        defaults = {
            "span_id": f"{n:016x}",
            "kind": Span.Kind.MODEL,
            "name": "messages.create",
            "status": Span.Status.OK,
            "started_at": started,
            "ended_at": started + timedelta(milliseconds=420),
        }
        defaults.update(fields)
        return Span.objects.create(run=run, **defaults)

    return make


@pytest.fixture
def make_action(db):
    """A refund the policy held for a person: $129.00 with the threshold rule tripped."""

    def make(run: Run, **fields) -> PendingAction:
        defaults = {
            "tool_use_id": f"toolu_{PendingAction.objects.count() + 1:04d}",
            "tool": "issue_refund",
            "args": {"order_id": "ORD-10023", "amount_cents": 12900, "reason": "Arrived broken"},
            "amount_cents": 12900,
            "currency": "USD",
            "rules": REFUND_RULES,
            "reasoning": "The order was delivered damaged; a full refund of $129.00 is fair.",
        }
        defaults.update(fields)
        return PendingAction.objects.create(run=run, **defaults)

    return make


@pytest.fixture
def awaiting(make_run, make_action) -> PendingAction:
    """A run parked in awaiting_approval with its pending refund."""
    run = make_run(
        Run.Status.AWAITING_APPROVAL,
        subject="Blender arrived broken",
        customer_email="dana@example.com",
    )
    return make_action(run)


@pytest.fixture
def make_effect(db):
    def make(run: Run, **fields) -> Effect:
        defaults = {
            "idempotency_key": f"refund:{run.ticket.code}:ORD-10023",
            "tool": "issue_refund",
            "request": {"order_id": "ORD-10023", "amount_cents": 1999},
            "request_hash": "0" * 64,
            "status": Effect.Status.SUCCEEDED,
            "attempts": 1,
            "result": {"refund_id": "re_123", "status": "succeeded"},
            "provider_ref": "re_123",
            "completed_at": timezone.now(),
        }
        defaults.update(fields)
        return Effect.objects.create(ticket=run.ticket, run=run, **defaults)

    return make


# --- the browser ----------------------------------------------------------


def _chromium_missing() -> str | None:
    if not os.path.exists(CHROMIUM) or not shutil.which(CHROMIUM):
        return (
            f"Chromium is not installed at {CHROMIUM}: the browser tests need it "
            "(apt-get install chromium). They fail rather than skip so CI cannot pass without them."
        )
    try:
        subprocess.run([CHROMIUM, "--version"], check=True, capture_output=True, timeout=30)  # noqa: S603
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{CHROMIUM} does not run: {exc}"
    return None


@pytest.fixture(scope="module")
def chromium():
    """A headless Chromium per test module: Debian's, never a downloaded one.

    Module scope, not session: Playwright and the environment variable below
    must be gone before tests in other modules run (a subprocess that inherits
    the variable fails `check --deploy`).
    """
    problem = _chromium_missing()
    if problem:
        pytest.fail(problem, pytrace=False)
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread, and Django
    # refuses ORM calls from a thread with a running loop unless told it is safe.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(chromium, live_server):
    context = chromium.new_context(
        base_url=live_server.url, viewport={"width": 1366, "height": 900}
    )
    context.set_default_timeout(10_000)
    page = context.new_page()
    yield page
    context.close()
