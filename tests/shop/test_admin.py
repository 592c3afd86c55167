"""The demo shop and the simulated provider in the Django admin."""

import pytest
from django.urls import reverse

from agentops.shop.demo import demo_shop_seed
from agentops.shop.models import Order, Refund
from agentops.simgateway.models import ProviderRefund, ScriptedFault
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_(client, admin_user):
    demo_shop_seed()
    client.login(username=admin_user.username, password=PASSWORD)
    return client


@pytest.mark.parametrize(
    "name",
    [
        "shop_customer_changelist",
        "shop_order_changelist",
        "shop_refund_changelist",
        "simgateway_providerrefund_changelist",
        "simgateway_scriptedfault_changelist",
    ],
)
def test_each_changelist_shows(admin_client_, name):
    assert admin_client_.get(reverse(f"admin:{name}")).status_code == 200


def test_it_finds_orders_by_id_tracking_number_payment_or_email(admin_client_):
    order = Order.objects.get(order_id="ORD-10013")

    def found(term):
        response = admin_client_.get(reverse("admin:shop_order_changelist"), {"q": term})
        return sorted(o.order_id for o in response.context["cl"].result_list)

    assert found("ord-10013") == ["ORD-10013"]
    assert found(order.tracking_number.lower()) == ["ORD-10013"]
    assert found(order.payment_ref) == ["ORD-10013"]
    assert found("grace@example.com") == ["ORD-10002", "ORD-10013"]


def test_an_order_page_shows_its_refunds(admin_client_):
    order = Order.objects.get(order_id="ORD-10013")

    response = admin_client_.get(reverse("admin:shop_order_change", args=[order.pk]))

    assert response.status_code == 200
    assert order.refunds.get().reference in response.text


def test_refunds_cannot_be_added_changed_or_deleted(admin_client_):
    refund = Refund.objects.first()

    assert admin_client_.get(reverse("admin:shop_refund_add")).status_code == 403
    assert (
        admin_client_.get(reverse("admin:shop_refund_delete", args=[refund.pk])).status_code == 403
    )
    page = admin_client_.get(reverse("admin:shop_refund_change", args=[refund.pk]))
    assert page.status_code == 200
    assert 'name="amount_cents"' not in page.text


def test_the_providers_records_are_read_only(admin_client_):
    row = ProviderRefund.objects.first()
    change = reverse("admin:simgateway_providerrefund_change", args=[row.pk])

    assert admin_client_.get(reverse("admin:simgateway_providerrefund_add")).status_code == 403
    assert admin_client_.post(change, {"amount_cents": 1}).status_code == 403
    row.refresh_from_db()
    assert row.amount_cents != 1
    delete = reverse("admin:simgateway_providerrefund_delete", args=[row.pk])
    assert admin_client_.post(delete, {"post": "yes"}).status_code == 403
    assert ProviderRefund.objects.filter(pk=row.pk).exists()


def test_an_engineer_can_stage_a_scripted_fault(admin_client_):
    response = admin_client_.post(
        reverse("admin:simgateway_scriptedfault_add"),
        {"payment_ref": "pi_staged", "kind": "server_error", "remaining": 3},
    )

    assert response.status_code == 302
    assert ScriptedFault.objects.filter(payment_ref="pi_staged", remaining=3).exists()


def test_staff_without_permissions_cannot_see_the_providers_records(client, staff_viewer):
    client.login(username=staff_viewer.username, password=PASSWORD)

    response = client.get(reverse("admin:simgateway_providerrefund_changelist"))

    assert response.status_code == 403
