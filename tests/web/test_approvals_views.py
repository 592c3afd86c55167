import json
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from agentops.models import Run
from approvals.models import PendingAction
from tests.conftest import PASSWORD

HX = {"HX-Request": "true"}


@pytest.fixture
def lead_client(client, support_lead):
    client.force_login(support_lead)
    return client


def approve_url(action):
    return reverse("approval_approve", args=[action.code])


def reject_url(action):
    return reverse("approval_reject", args=[action.code])


def post(client, url, data=None, *, htmx=False, capture):
    """POST as if the request's transaction committed, so the enqueue is seen."""
    with capture(execute=True):
        return client.post(url, data or {}, headers=HX if htmx else {})


# --- the queue --------------------------------------------------------------


def test_it_shows_the_queue_with_amount_customer_order_rules_and_reasoning(lead_client, awaiting):
    response = lead_client.get(reverse("approvals"))
    html = response.content.decode()
    assert response.status_code == 200
    assert "$129.00" in html
    assert "dana@example.com" in html
    assert "ORD-10023" in html
    assert "amount_over_threshold" in html and "$129.00 is above $50.00" in html
    assert "a full refund of $129.00 is fair" in html
    assert reverse("run_detail", args=[awaiting.run.code]) in html
    assert approve_url(awaiting) in html and reject_url(awaiting) in html
    assert "<html" in html


def test_it_lists_pending_actions_oldest_first(lead_client, make_run, make_action):
    newer = make_action(make_run(Run.Status.AWAITING_APPROVAL), amount_cents=20000)
    older = make_action(
        make_run(Run.Status.AWAITING_APPROVAL),
        amount_cents=30000,
        created_at=timezone.now() - timedelta(hours=3),
    )
    html = lead_client.get(reverse("approvals")).content.decode()
    assert html.index(f"action-{older.code}") < html.index(f"action-{newer.code}")


def test_it_formats_amounts_in_their_currency(lead_client, make_run, make_action):
    make_action(make_run(Run.Status.AWAITING_APPROVAL), amount_cents=550, currency="EUR")
    make_action(make_run(Run.Status.AWAITING_APPROVAL), amount_cents=123456, currency="CHF")
    html = lead_client.get(reverse("approvals")).content.decode()
    assert "€5.50" in html
    assert "1,234.56 CHF" in html


def test_it_answers_htmx_with_the_queue_fragment(lead_client, awaiting):
    response = lead_client.get(reverse("approvals"), headers=HX)
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="queue"')
    assert f"action-{awaiting.code}" in html
    assert "<html" not in html


def test_it_answers_the_recent_table_s_refresh_with_that_fragment(lead_client, awaiting):
    response = lead_client.get(reverse("approvals"), headers={**HX, "HX-Target": "recent"})
    assert response.content.decode().lstrip().startswith('<section id="recent"')


def test_it_hides_the_buttons_from_staff_who_may_not_decide(client, staff_viewer, awaiting):
    client.force_login(staff_viewer)
    html = client.get(reverse("approvals")).content.decode()
    assert "$129.00" in html
    assert approve_url(awaiting) not in html
    assert reject_url(awaiting) not in html
    assert "can see this queue but not decide" in html


def test_it_forbids_the_queue_to_users_who_are_not_staff(client, outsider, awaiting):
    client.force_login(outsider)
    assert client.get(reverse("approvals")).status_code == 403
    assert client.get(reverse("approvals"), headers=HX).status_code == 403


def test_it_puts_the_csrf_token_in_the_htmx_headers(lead_client, awaiting):
    response = lead_client.get(reverse("approvals"))
    html = response.content.decode()
    start = html.index("hx-headers='") + len("hx-headers='")
    headers = json.loads(html[start : html.index("'", start)])
    assert headers["x-csrftoken"]


def test_it_shows_the_last_decisions_under_the_queue(lead_client, make_run, make_action, finance):
    for i in range(22):
        make_action(
            make_run(Run.Status.RESOLVED),
            status=PendingAction.Status.REJECTED,
            decided_by=finance,
            decided_at=timezone.now() - timedelta(minutes=i),
            reason=f"reason number {i:02d}",
        )
    html = lead_client.get(reverse("approvals")).content.decode()
    assert "Recently decided" in html
    assert "reason number 00" in html and "reason number 19" in html
    assert "reason number 20" not in html


def test_the_queue_and_the_history_name_both_approvers_of_a_four_eyes_decision(
    lead_client, make_run, make_action, support_lead, finance
):
    make_action(
        make_run(Run.Status.RESOLVED),
        status=PendingAction.Status.APPROVED,
        first_approved_by=support_lead,
        decided_by=finance,
        decided_at=timezone.now(),
    )
    for page in ("approvals", "approvals_history"):
        html = lead_client.get(reverse(page)).content.decode()
        assert "finance + lead" in html, page


@pytest.mark.parametrize("name", ["approval_approve", "approval_reject"])
def test_it_refuses_get_on_the_decision_urls(lead_client, awaiting, name):
    assert lead_client.get(reverse(name, args=[awaiting.code])).status_code == 405


@pytest.mark.parametrize("name", ["approval_approve", "approval_reject"])
def test_it_answers_404_for_an_unknown_action(lead_client, name):
    url = reverse(name, args=["00000000-0000-0000-0000-000000000000"])
    assert lead_client.post(url, {"reason_code": "over_policy", "reason": "x"}).status_code == 404
    assert (
        lead_client.post(url, {"reason_code": "over_policy", "reason": "x"}, headers=HX).status_code
        == 404
    )


def test_it_sends_anonymous_decisions_to_the_login_page(client, awaiting):
    response = client.post(approve_url(awaiting))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    awaiting.refresh_from_db()
    assert awaiting.status == PendingAction.Status.PENDING


# --- the nav badge ----------------------------------------------------------


def test_it_counts_pending_actions_in_the_nav_badge(lead_client, awaiting, make_run, make_action):
    make_action(make_run(Run.Status.AWAITING_APPROVAL))
    html = lead_client.get(reverse("runs")).content.decode()
    assert 'id="nav-pending"' in html and ">2</span>" in html


def test_it_serves_the_badge_on_its_own_for_htmx_and_plain_requests(lead_client, awaiting):
    for headers in (HX, {}):
        response = lead_client.get(reverse("approvals_count"), headers=headers)
        html = response.content.decode().strip()
        assert response.status_code == 200
        assert html.startswith('<span id="nav-pending"') and html.endswith(">1</span>")
        assert 'hx-trigger="approvals-changed from:body' in html


def test_it_forbids_the_badge_to_users_who_are_not_staff(client, outsider):
    client.force_login(outsider)
    assert client.get(reverse("approvals_count")).status_code == 403


def test_it_refuses_a_post_to_the_badge(lead_client):
    assert lead_client.post(reverse("approvals_count")).status_code == 405


# --- approve ----------------------------------------------------------------


def test_it_approves_with_htmx_and_resumes_the_run(
    lead_client, support_lead, awaiting, enqueued_runs, django_capture_on_commit_callbacks
):
    response = post(
        lead_client, approve_url(awaiting), htmx=True, capture=django_capture_on_commit_callbacks
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith(
        f'<article class="action-card action-approved" id="action-{awaiting.code}"'
    )
    assert "<html" not in html
    assert "Approved" in html and "lead" in html
    assert approve_url(awaiting) not in html
    assert json.loads(response["HX-Trigger"]) == {"approvals-changed": {}}

    awaiting.refresh_from_db()
    awaiting.run.refresh_from_db()
    assert awaiting.status == PendingAction.Status.APPROVED
    assert awaiting.decided_by == support_lead
    assert awaiting.run.status == Run.Status.QUEUED
    assert enqueued_runs == [awaiting.run.pk]


def test_it_approves_without_htmx_and_redirects_to_the_queue(
    lead_client, awaiting, enqueued_runs, django_capture_on_commit_callbacks
):
    response = post(lead_client, approve_url(awaiting), capture=django_capture_on_commit_callbacks)
    assert response.status_code == 302
    assert response["Location"] == reverse("approvals")
    awaiting.refresh_from_db()
    assert awaiting.status == PendingAction.Status.APPROVED
    assert enqueued_runs == [awaiting.run.pk]
    followed = lead_client.get(response["Location"]).content.decode()
    assert "Approved: issue_refund $129.00 for dana@example.com." in followed


def test_it_forbids_staff_without_the_permission_to_approve(
    client, staff_viewer, awaiting, enqueued_runs, django_capture_on_commit_callbacks
):
    client.force_login(staff_viewer)
    for htmx in (True, False):
        response = post(
            client, approve_url(awaiting), htmx=htmx, capture=django_capture_on_commit_callbacks
        )
        assert response.status_code == 403
    awaiting.refresh_from_db()
    assert awaiting.status == PendingAction.Status.PENDING
    assert enqueued_runs == []


def test_it_forbids_users_who_are_not_staff_to_decide(client, outsider, awaiting):
    # Even holding the permission, a non-staff account is not let in.
    from django.contrib.auth.models import Permission

    outsider.user_permissions.add(Permission.objects.get(codename="decide_pendingaction"))
    client.force_login(outsider)
    assert client.post(approve_url(awaiting)).status_code == 403
    awaiting.refresh_from_db()
    assert awaiting.status == PendingAction.Status.PENDING


def test_it_tells_the_second_approver_who_decided_first(
    client, finance, support_lead, awaiting, enqueued_runs, django_capture_on_commit_callbacks
):
    client.force_login(finance)
    post(client, approve_url(awaiting), htmx=True, capture=django_capture_on_commit_callbacks)
    second = Client()
    second.force_login(support_lead)
    response = post(
        second, approve_url(awaiting), htmx=True, capture=django_capture_on_commit_callbacks
    )
    assert response.status_code == 409
    html = response.content.decode()
    assert "Already approved by finance at" in html
    assert "HX-Trigger" in response  # the badge still refreshes: the count did change
    awaiting.refresh_from_db()
    assert awaiting.decided_by == finance
    assert enqueued_runs == [awaiting.run.pk]  # once, for the first decision only


def test_it_tells_a_late_rejecter_without_htmx_who_approved(
    client, finance, support_lead, awaiting, django_capture_on_commit_callbacks
):
    client.force_login(finance)
    post(client, approve_url(awaiting), capture=django_capture_on_commit_callbacks)
    second = Client()
    second.force_login(support_lead)
    response = post(
        second,
        reject_url(awaiting),
        {"reason_code": "over_policy", "reason": "too much"},
        capture=django_capture_on_commit_callbacks,
    )
    assert response.status_code == 302
    followed = second.get(response["Location"]).content.decode()
    assert "Already approved by finance at" in followed
    awaiting.refresh_from_db()
    assert awaiting.status == PendingAction.Status.APPROVED


# --- reject -----------------------------------------------------------------


def test_it_rejects_with_a_reason_and_resumes_the_run(
    lead_client, awaiting, enqueued_runs, django_capture_on_commit_callbacks
):
    response = post(
        lead_client,
        reject_url(awaiting),
        {"reason_code": "over_policy", "reason": "  Order is outside the 30-day window  "},
        htmx=True,
        capture=django_capture_on_commit_callbacks,
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "Rejected" in html and "Order is outside the 30-day window" in html
    assert "approvals-changed" in response["HX-Trigger"]
    awaiting.refresh_from_db()
    awaiting.run.refresh_from_db()
    assert awaiting.status == PendingAction.Status.REJECTED
    assert awaiting.reason == "Order is outside the 30-day window"
    assert awaiting.run.status == Run.Status.QUEUED
    assert enqueued_runs == [awaiting.run.pk]


@pytest.mark.parametrize("reason", [None, "", "    "])
def test_it_decides_nothing_when_a_rejection_has_no_reason(
    lead_client, awaiting, enqueued_runs, django_capture_on_commit_callbacks, reason
):
    data = {} if reason is None else {"reason_code": "over_policy", "reason": reason}
    response = post(
        lead_client,
        reject_url(awaiting),
        data,
        htmx=True,
        capture=django_capture_on_commit_callbacks,
    )
    assert response.status_code == 422
    html = response.content.decode()
    assert "Say why the action is rejected" in html
    assert html.lstrip().startswith("<article")
    assert reject_url(awaiting) in html  # the form is still there to try again
    awaiting.refresh_from_db()
    assert awaiting.status == PendingAction.Status.PENDING
    assert Run.objects.get(pk=awaiting.run_id).status == Run.Status.AWAITING_APPROVAL
    assert enqueued_runs == []


def test_it_shows_the_missing_reason_on_the_full_page_without_htmx(
    lead_client, awaiting, django_capture_on_commit_callbacks
):
    response = post(
        lead_client,
        reject_url(awaiting),
        {"reason_code": "over_policy", "reason": ""},
        capture=django_capture_on_commit_callbacks,
    )
    assert response.status_code == 422
    html = response.content.decode()
    assert "<html" in html and "Say why the action is rejected" in html
    awaiting.refresh_from_db()
    assert awaiting.status == PendingAction.Status.PENDING


def test_it_forbids_staff_without_the_permission_to_reject(client, staff_viewer, awaiting):
    client.force_login(staff_viewer)
    assert (
        client.post(
            reject_url(awaiting), {"reason_code": "over_policy", "reason": "no"}, headers=HX
        ).status_code
        == 403
    )
    awaiting.refresh_from_db()
    assert awaiting.status == PendingAction.Status.PENDING


# --- CSRF -------------------------------------------------------------------


def test_it_refuses_a_decision_without_a_csrf_token(support_lead, awaiting):
    client = Client(enforce_csrf_checks=True)
    client.force_login(support_lead)
    response = client.post(approve_url(awaiting), headers=HX)
    assert response.status_code == 403
    awaiting.refresh_from_db()
    assert awaiting.status == PendingAction.Status.PENDING


def test_it_accepts_a_decision_with_the_csrf_token_from_the_page_header(
    support_lead, awaiting, django_capture_on_commit_callbacks
):
    client = Client(enforce_csrf_checks=True)
    assert client.login(username=support_lead.username, password=PASSWORD)
    html = client.get(reverse("approvals")).content.decode()
    start = html.index("hx-headers='") + len("hx-headers='")
    token = json.loads(html[start : html.index("'", start)])["x-csrftoken"]
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(approve_url(awaiting), headers={**HX, "X-CSRFToken": token})
    assert response.status_code == 200
    awaiting.refresh_from_db()
    assert awaiting.status == PendingAction.Status.APPROVED


# --- limits, detail, history, filters, polling -------------------------------------


def test_it_refuses_an_approval_above_the_limit_with_403(
    lead_client, make_run, make_action, django_capture_on_commit_callbacks
):
    action = make_action(make_run(Run.Status.AWAITING_APPROVAL), amount_cents=50000)
    html = lead_client.get(reverse("approvals")).content.decode()
    assert "Above your approval limit ($200.00)" in html
    assert approve_url(action) not in html

    response = post(
        lead_client, approve_url(action), htmx=True, capture=django_capture_on_commit_callbacks
    )

    assert response.status_code == 403
    action.refresh_from_db()
    assert action.status == PendingAction.Status.PENDING


def test_it_refuses_a_rejection_without_a_reason_code(
    lead_client, awaiting, django_capture_on_commit_callbacks
):
    response = post(
        lead_client,
        reject_url(awaiting),
        {"reason": "no"},
        htmx=True,
        capture=django_capture_on_commit_callbacks,
    )
    assert response.status_code == 422
    assert "Choose a reason code." in response.content.decode()
    awaiting.refresh_from_db()
    assert awaiting.status == PendingAction.Status.PENDING


def test_it_shows_the_detail_of_an_action(lead_client, awaiting):
    response = lead_client.get(reverse("approval_detail", args=[awaiting.code]))
    html = response.content.decode()
    assert response.status_code == 200
    assert "The customer’s message" in html and "arrived broken" in html
    assert "$129.00 is above $50.00" in html
    assert reverse("run_detail", args=[awaiting.run.code]) in html
    assert (
        lead_client.get(
            reverse("approval_detail", args=["00000000-0000-0000-0000-000000000000"])
        ).status_code
        == 404
    )


def test_it_forbids_the_detail_and_history_to_users_who_are_not_staff(client, outsider, awaiting):
    client.force_login(outsider)
    assert client.get(reverse("approval_detail", args=[awaiting.code])).status_code == 403
    assert client.get(reverse("approvals_history")).status_code == 403


def test_it_searches_the_history_of_decisions(lead_client, support_lead, make_run, make_action):
    from approvals.services import action_approve, action_reject

    a = make_action(make_run(Run.Status.AWAITING_APPROVAL, customer_email="zoe@example.com"))
    b = make_action(make_run(Run.Status.AWAITING_APPROVAL, customer_email="yan@example.com"))
    action_approve(action=a, actor=support_lead)
    action_reject(action=b, actor=support_lead, reason="Duplicate claim")

    html = lead_client.get(reverse("approvals_history"), {"q": "zoe"}).content.decode()
    assert "zoe@example.com" in html and "yan@example.com" not in html
    fragment = lead_client.get(
        reverse("approvals_history"), {"q": "duplicate"}, headers=HX
    ).content.decode()
    assert fragment.lstrip().startswith('<section id="results"')
    assert "yan@example.com" in fragment and "zoe@example.com" not in fragment


def test_it_filters_the_queue_by_amount_currency_and_age(lead_client, make_run, make_action):
    small = make_action(make_run(Run.Status.AWAITING_APPROVAL), amount_cents=6000)
    euro = make_action(make_run(Run.Status.AWAITING_APPROVAL), amount_cents=9000, currency="EUR")
    old = make_action(
        make_run(Run.Status.AWAITING_APPROVAL),
        amount_cents=30000,
        created_at=timezone.now() - timedelta(hours=2),
    )

    def shown(params):
        html = lead_client.get(reverse("approvals"), params).content.decode()
        return {a.pk for a in (small, euro, old) if f"action-{a.code}" in html}

    assert shown({"min_amount": "70", "max_amount": "300"}) == {euro.pk, old.pk}
    assert shown({"currency": "eur"}) == {euro.pk}
    assert shown({"older_than": "60"}) == {old.pk}
    assert shown({"min_amount": "not a number"}) == {small.pk, euro.pk, old.pk}


def test_it_answers_a_poll_with_204_until_the_queue_changes(lead_client, make_run, make_action):
    make_action(make_run(Run.Status.AWAITING_APPROVAL))
    html = lead_client.get(reverse("approvals")).content.decode()
    signature = html.split('data-signature="')[1].split('"')[0]

    same = lead_client.get(reverse("approvals"), {"signature": signature}, headers=HX)
    assert same.status_code == 204
    make_action(make_run(Run.Status.AWAITING_APPROVAL))
    changed = lead_client.get(reverse("approvals"), {"signature": signature}, headers=HX)
    assert changed.status_code == 200
