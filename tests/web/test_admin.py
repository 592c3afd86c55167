import pytest
from django.urls import reverse

from agentops.models import ApiToken, Effect, Run, Ticket
from agentops.services import api_token_create
from approvals.admin import ADMIN_REJECT_REASON
from approvals.models import PendingAction, RiskPolicy


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def changelist(model) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


def change(obj) -> str:
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


def test_it_loads_every_admin_list_and_change_page(admin_client, awaiting, make_span, make_effect):
    run = awaiting.run
    span = make_span(run)
    effect = make_effect(run)
    token, _ = api_token_create(name="ci")
    policy = RiskPolicy.objects.create(currency="USD", approval_threshold_cents=5000)
    objects = [run.ticket, run, effect, token, policy, awaiting, span]
    for obj in objects:
        assert admin_client.get(changelist(type(obj))).status_code == 200, type(obj)
        assert admin_client.get(change(obj)).status_code == 200, type(obj)
    assert admin_client.get(reverse("admin:index")).status_code == 200


def test_it_searches_tickets_by_email_subject_and_external_id(admin_client, make_run):
    make_run(customer_email="findme@example.com", subject="Lost parcel", external_id="zd-777")
    make_run(customer_email="other@example.com", subject="Other")
    for query in ("findme@", "Lost parcel", "zd-777"):
        html = admin_client.get(changelist(Ticket), {"q": query}).content.decode()
        assert "Lost parcel" in html and "other@example.com" not in html, query


def test_it_links_a_run_in_admin_to_its_run_page(admin_client, make_run):
    run = make_run()
    html = admin_client.get(change(run)).content.decode()
    assert reverse("run_detail", args=[run.code]) in html
    assert 'name="messages"' not in html  # the conversation is shown, not editable


def test_it_keeps_the_ledger_read_only_in_admin(admin_client, make_run, make_effect):
    effect = make_effect(make_run())
    html = admin_client.get(change(effect)).content.decode()
    assert 'name="idempotency_key"' not in html
    assert admin_client.post(change(effect), {"status": "failed"}).status_code == 403
    add = reverse("admin:agentops_effect_add")
    assert admin_client.get(add).status_code == 403
    delete = reverse("admin:agentops_effect_delete", args=[effect.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    effect.refresh_from_db()
    assert effect.status == Effect.Status.SUCCEEDED


def test_it_keeps_spans_read_only_in_admin(admin_client, make_run, make_span):
    span = make_span(make_run())
    assert admin_client.get(reverse("admin:traces_span_add")).status_code == 403
    assert 'name="name"' not in admin_client.get(change(span)).content.decode()


def test_it_never_shows_a_token_s_hash_and_offers_no_way_to_add_one(admin_client):
    token, raw = api_token_create(name="zendesk")
    for url in (changelist(ApiToken), change(token)):
        html = admin_client.get(url).content.decode()
        assert token.token_hash not in html
        assert raw not in html
    assert "zendesk" in admin_client.get(changelist(ApiToken)).content.decode()
    assert admin_client.get(reverse("admin:agentops_apitoken_add")).status_code == 403


def test_it_revokes_selected_tokens(admin_client):
    keep, _ = api_token_create(name="keep")
    revoke, _ = api_token_create(name="revoke")
    response = admin_client.post(
        changelist(ApiToken),
        {"action": "revoke", "_selected_action": [revoke.pk]},
        follow=True,
    )
    assert "Revoked 1 token." in response.content.decode()
    revoke.refresh_from_db()
    keep.refresh_from_db()
    assert revoke.revoked_at is not None and not revoke.is_active
    assert keep.revoked_at is None


def test_it_keeps_the_first_revocation_time(admin_client):
    token, _ = api_token_create(name="old")
    admin_client.post(changelist(ApiToken), {"action": "revoke", "_selected_action": [token.pk]})
    token.refresh_from_db()
    first = token.revoked_at
    admin_client.post(changelist(ApiToken), {"action": "revoke", "_selected_action": [token.pk]})
    token.refresh_from_db()
    assert token.revoked_at == first


def test_it_lets_admins_edit_the_risk_policy_and_keeps_each_change(admin_client, admin_user):
    from approvals.models import PolicyChange

    policy = RiskPolicy.objects.create(currency="USD", approval_threshold_cents=5000)
    response = admin_client.post(
        change(policy),
        {
            "tool": "issue_refund",
            "currency": "USD",
            "approval_threshold_cents": 7500,
            "window_days": 30,
            "changes-TOTAL_FORMS": 0,
            "changes-INITIAL_FORMS": 0,
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    policy.refresh_from_db()
    assert policy.approval_threshold_cents == 7500 and policy.version == 1
    change_row = PolicyChange.objects.get(policy=policy)
    assert change_row.changed_by == admin_user
    assert change_row.old["approval_threshold_cents"] == 5000
    assert change_row.new["approval_threshold_cents"] == 7500
    page = admin_client.get(change(policy)).content.decode()
    assert "History of changes" in page and "7500" in page


def test_it_keeps_decisions_and_policy_history_read_only_in_admin(
    admin_client, admin_user, awaiting
):
    from approvals.models import Decision, PolicyChange
    from approvals.services import action_approve, policy_save

    action_approve(action=awaiting, actor=admin_user)
    decision = Decision.objects.get()
    policy_save(policy=RiskPolicy(currency="EUR", approval_threshold_cents=1), actor=admin_user)
    history = PolicyChange.objects.get()
    for obj in (decision, history):
        assert admin_client.get(change(obj)).status_code == 200
        assert admin_client.post(change(obj), {}).status_code == 403
        delete = reverse(
            f"admin:{obj._meta.app_label}_{obj._meta.model_name}_delete", args=[obj.pk]
        )
        assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert Decision.objects.count() == 1 and PolicyChange.objects.count() == 1


def test_it_approves_from_the_admin_through_the_service(
    admin_client, admin_user, awaiting, enqueued_runs, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            changelist(PendingAction),
            {"action": "approve", "_selected_action": [awaiting.pk]},
            follow=True,
        )
    assert "Decided 1 action" in response.content.decode()
    awaiting.refresh_from_db()
    assert awaiting.status == PendingAction.Status.APPROVED
    assert awaiting.decided_by == admin_user
    assert Run.objects.get(pk=awaiting.run_id).status == Run.Status.QUEUED
    assert enqueued_runs == [awaiting.run_id]


def test_it_rejects_from_the_admin_with_a_fixed_reason(
    admin_client, awaiting, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            changelist(PendingAction), {"action": "reject", "_selected_action": [awaiting.pk]}
        )
    awaiting.refresh_from_db()
    assert awaiting.status == PendingAction.Status.REJECTED
    assert awaiting.reason == ADMIN_REJECT_REASON == "Rejected in admin"


def test_it_reports_an_action_already_decided_in_the_admin(
    admin_client, finance, awaiting, django_capture_on_commit_callbacks
):
    from approvals.services import action_approve

    with django_capture_on_commit_callbacks(execute=True):
        action_approve(action=awaiting, actor=finance)
    response = admin_client.post(
        changelist(PendingAction),
        {"action": "reject", "_selected_action": [awaiting.pk]},
        follow=True,
    )
    assert "already approved by finance" in response.content.decode()
    awaiting.refresh_from_db()
    assert awaiting.status == PendingAction.Status.APPROVED


def test_it_offers_the_decisions_only_to_admin_users_who_may_decide(
    client, django_user_model, awaiting
):
    from django.contrib.auth.models import Permission

    clerk = django_user_model.objects.create_user("clerk", password="x-unused-pw-1", is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_pendingaction"))
    client.force_login(clerk)
    html = client.get(changelist(PendingAction)).content.decode()
    assert "Approve selected pending actions" not in html
    response = client.post(
        changelist(PendingAction), {"action": "approve", "_selected_action": [awaiting.pk]}
    )
    assert response.status_code in (200, 302)
    awaiting.refresh_from_db()
    assert awaiting.status == PendingAction.Status.PENDING


def test_it_keeps_non_staff_out_of_the_admin(client, outsider):
    client.force_login(outsider)
    response = client.get(reverse("admin:index"))
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_it_links_the_admin_only_for_users_who_can_see_something_there(
    client, admin_user, support_lead
):
    client.force_login(support_lead)  # may decide, but may not view any model in the admin
    assert reverse("admin:index") not in client.get(reverse("runs")).content.decode()
    client.force_login(admin_user)
    assert reverse("admin:index") in client.get(reverse("runs")).content.decode()


def test_it_reports_a_refused_decision_in_the_admin_as_an_error(
    admin_client, awaiting, monkeypatch
):
    from django.core.exceptions import PermissionDenied

    import approvals.admin

    def refuse(**kwargs):
        raise PermissionDenied("You may not decide pending actions.")

    monkeypatch.setattr(approvals.admin, "action_approve", refuse)
    response = admin_client.post(
        changelist(PendingAction),
        {"action": "approve", "_selected_action": [awaiting.pk]},
        follow=True,
    )
    assert "You may not decide pending actions." in response.content.decode()
    awaiting.refresh_from_db()
    assert awaiting.status == PendingAction.Status.PENDING


def test_it_loads_and_edits_model_prices_and_the_route_table(admin_client):
    from agentops.routing.models import ModelPrice, Route

    price = ModelPrice.objects.get(model="claude-haiku-4-5")
    route = Route.objects.get(name="High-value refunds")
    for obj in (price, route):
        assert admin_client.get(changelist(type(obj))).status_code == 200
        assert admin_client.get(change(obj)).status_code == 200
    response = admin_client.post(
        change(price),
        {
            "model": "claude-haiku-4-5",
            "input_per_mtok": "0.80",
            "output_per_mtok": "4",
            "cache_read_per_mtok": "0.08",
            "cache_write_per_mtok": "1",
        },
    )
    assert response.status_code == 302
    price.refresh_from_db()
    assert str(price.input_per_mtok) == "0.8000"
