"""The finance page: reconciliation of the ledger against the provider's refunds."""

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from agentops.simgateway.models import ProviderRefund

HX = {"HX-Request": "true"}
URL = reverse("reconciliation")


@pytest.fixture
def finance_client(client, finance):
    finance.user_permissions.add(
        Permission.objects.get(content_type__app_label="agentops", codename="view_effect")
    )
    client.force_login(finance)
    return client


@pytest.mark.django_db
def test_it_sends_anonymous_visitors_to_the_login_page(client):
    response = client.get(URL)
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["outsider", "staff_viewer", "support_lead"])
def test_it_forbids_users_without_the_ledger_permission(client, request, who):
    client.force_login(request.getfixturevalue(who))
    assert client.get(URL).status_code == 403
    assert client.get(URL, headers=HX).status_code == 403


def test_it_refuses_other_methods(finance_client):
    assert finance_client.post(URL).status_code == 405


def test_it_shows_a_clean_report_and_links_it_in_the_nav(finance_client, make_run, make_effect):
    effect = make_effect(make_run())
    ProviderRefund.objects.create(
        refund_id="re_123",
        payment_ref="pi_1",
        amount_cents=1999,
        currency="USD",
        idempotency_key=effect.idempotency_key,
        metadata={"ticket": "t", "order": "ORD-10023"},
    )
    html = finance_client.get(URL).content.decode()

    assert "Clean" in html and "1 matched" in html and "0 duplicates" in html
    assert f'href="{URL}"' in html
    assert "<html" in html


def test_it_lists_discrepancies_and_answers_htmx_with_the_fragment(
    finance_client, make_run, make_effect
):
    make_effect(make_run())  # succeeded in the ledger, unknown to the provider
    ProviderRefund.objects.create(
        refund_id="re_<b>stray</b>",
        payment_ref="pi_2",
        amount_cents=500,
        currency="USD",
        idempotency_key="refund:nobody:ORD-1",
        metadata={},
    )
    response = finance_client.get(URL, {"since": "2020-01-01"}, headers=HX)
    html = response.content.decode()

    assert response.status_code == 200 and "<html" not in html
    assert 'id="reconciliation-report"' in html
    assert "Discrepancies" in html and "1 provider-only" in html and "1 ledger-only" in html
    assert "re_&lt;b&gt;stray&lt;/b&gt;" in html  # escaped
    assert "since 2020-01-01" in html


def test_it_refuses_a_bad_date(finance_client):
    response = finance_client.get(URL, {"since": "last week"})
    assert response.status_code == 400
