"""The demo shop through the OrderDirectory interface the tools use."""

from dataclasses import FrozenInstanceError
from datetime import UTC, datetime

import pytest

from agentops.integrations.orders import OrderInfo, get_order_directory
from agentops.shop.directory import OrderNotFound, ShopOrderDirectory
from agentops.shop.models import Customer, Order, Refund

pytestmark = pytest.mark.django_db


@pytest.fixture
def ada():
    return Customer.objects.create(email="ada@example.com", name="Ada Lovelace")


@pytest.fixture
def order(ada):
    return Order.objects.create(
        order_id="ORD-10023",
        customer=ada,
        total_cents=4200,
        currency="USD",
        status=Order.Status.DELIVERED,
        placed_at=datetime(2026, 1, 5, 10, 0, tzinfo=UTC),
        delivered_at=datetime(2026, 1, 8, 15, 0, tzinfo=UTC),
        tracking_number="1Z999AA10123456784",
        payment_ref="pi_3PabcdefGHIJKLMNOPqrstuv",
    )


@pytest.fixture
def other_order(ada):
    """Ada's second order, in another currency."""
    return Order.objects.create(
        order_id="ORD-10024",
        customer=ada,
        total_cents=999,
        currency="EUR",
        status=Order.Status.PLACED,
        placed_at=datetime(2026, 2, 1, tzinfo=UTC),
        payment_ref="pi_other",
    )


def test_it_is_the_directory_the_tools_get():
    assert isinstance(get_order_directory(), ShopOrderDirectory)


def test_it_returns_a_frozen_snapshot_not_a_model(order):
    info = ShopOrderDirectory().get("ORD-10023")

    assert isinstance(info, OrderInfo)
    assert info.customer_email == "ada@example.com"
    assert info.customer_name == "Ada Lovelace"
    assert info.total_cents == 4200
    assert info.refundable_cents == 4200
    with pytest.raises(FrozenInstanceError):
        info.total_cents = 1  # type: ignore[misc]


def test_it_finds_an_order_id_typed_carelessly(order):
    assert ShopOrderDirectory().get("  ord-10023\n").order_id == "ORD-10023"


def test_it_returns_none_for_an_unknown_order(order):
    assert ShopOrderDirectory().get("ORD-99999") is None
    assert ShopOrderDirectory().get("") is None


@pytest.mark.parametrize(
    "typed", ["1Z999AA10123456784", " 1z999aa10123456784 ", "1Z 999 AA1 01 2345 6784"]
)
def test_it_normalises_tracking_numbers(order, typed):
    assert ShopOrderDirectory().find_by_tracking_number(typed).order_id == "ORD-10023"


def test_it_returns_none_for_an_unknown_or_blank_tracking_number(order):
    assert ShopOrderDirectory().find_by_tracking_number("1Z999AA10000000000") is None
    assert ShopOrderDirectory().find_by_tracking_number("   ") is None


def test_it_lists_a_customers_orders_by_email_in_any_case(order, other_order):

    orders = ShopOrderDirectory().for_customer(" ADA@example.com ")

    assert [o.order_id for o in orders] == ["ORD-10024", "ORD-10023"]
    assert ShopOrderDirectory().for_customer("nobody@example.com") == []


def test_it_counts_refunds_already_made(order):
    Refund.objects.create(order=order, amount_cents=1200, reference="re_old", reason="late")

    info = ShopOrderDirectory().get("ORD-10023")

    assert [r.reference for r in info.refunds] == ["re_old"]
    assert info.refunded_cents == 1200
    assert info.refundable_cents == 3000
    assert info.as_dict()["refundable_cents"] == 3000


def test_it_records_a_refund_once_per_reference(order):
    directory = ShopOrderDirectory()

    directory.record_refund(order_id="ord-10023", amount_cents=500, reference="re_1", reason="x")
    directory.record_refund(order_id="ORD-10023", amount_cents=500, reference="re_1", reason="x")

    assert Refund.objects.filter(reference="re_1").count() == 1
    assert directory.get("ORD-10023").refunded_cents == 500


def test_it_refuses_a_refund_for_an_unknown_order(order):
    with pytest.raises(OrderNotFound):
        ShopOrderDirectory().record_refund(
            order_id="ORD-99999", amount_cents=500, reference="re_1", reason=""
        )
    assert not Refund.objects.exists()


def test_it_refuses_one_reference_recorded_with_another_amount(order):
    directory = ShopOrderDirectory()
    directory.record_refund(order_id="ORD-10023", amount_cents=500, reference="re_1", reason="")

    with pytest.raises(ValueError, match="already recorded"):
        directory.record_refund(order_id="ORD-10023", amount_cents=700, reference="re_1", reason="")
    assert Refund.objects.get(reference="re_1").amount_cents == 500


def test_it_refuses_a_refund_that_is_not_positive(order):
    with pytest.raises(ValueError, match="positive"):
        ShopOrderDirectory().record_refund(
            order_id="ORD-10023", amount_cents=0, reference="re_1", reason=""
        )


def test_it_reads_an_order_its_customer_and_refunds_in_one_query(order, django_assert_num_queries):
    for n, day in enumerate((9, 7, 8)):
        Refund.objects.create(
            order=order,
            amount_cents=100 + n,
            reference=f"re_{n}",
            reason=f"reason {n}",
            created_at=datetime(2026, 1, day, tzinfo=UTC),
        )

    with django_assert_num_queries(1):
        info = ShopOrderDirectory().get("ORD-10023")

    assert [(r.reference, r.amount_cents, r.reason) for r in info.refunds] == [
        ("re_1", 101, "reason 1"),
        ("re_2", 102, "reason 2"),
        ("re_0", 100, "reason 0"),
    ]
    assert {r.order_id for r in info.refunds} == {"ORD-10023"}
    assert info.refunds[0].created_at == datetime(2026, 1, 7, tzinfo=UTC)
    assert info.placed_at == datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
    assert info.refundable_cents == 4200 - 303
    with django_assert_num_queries(1):
        assert ShopOrderDirectory().find_by_tracking_number("1Z999AA10123456784") == info


def test_it_keeps_each_orders_refunds_with_their_order(order, other_order):
    Refund.objects.create(order=order, amount_cents=200, reference="re_a")
    Refund.objects.create(order=other_order, amount_cents=300, reference="re_b")
    Refund.objects.create(order=order, amount_cents=400, reference="re_c")

    orders = ShopOrderDirectory().for_customer("ada@example.com")

    assert [(o.order_id, [r.reference for r in o.refunds]) for o in orders] == [
        ("ORD-10024", ["re_b"]),
        ("ORD-10023", ["re_a", "re_c"]),
    ]
    assert [o.refunded_cents for o in orders] == [300, 600]


def test_it_records_a_new_refund_in_one_statement(order, django_assert_num_queries):
    with django_assert_num_queries(1):
        ShopOrderDirectory().record_refund(
            order_id="ord-10023", amount_cents=500, reference="re_1", reason="x" * 400
        )

    refund = Refund.objects.get()
    assert (refund.order, refund.amount_cents, refund.reference) == (order, 500, "re_1")
    assert refund.reason == "x" * 300
    assert refund.created_at is not None


def test_it_refuses_an_unknown_order_even_for_a_reference_already_recorded(order):
    directory = ShopOrderDirectory()
    directory.record_refund(order_id="ORD-10023", amount_cents=500, reference="re_1", reason="")

    with pytest.raises(OrderNotFound):
        directory.record_refund(order_id="ORD-99999", amount_cents=500, reference="re_1", reason="")


def test_it_refuses_one_reference_recorded_on_another_order(order, other_order):
    directory = ShopOrderDirectory()
    directory.record_refund(order_id="ORD-10023", amount_cents=500, reference="re_1", reason="")

    with pytest.raises(ValueError, match="already recorded as 500 on ORD-10023"):
        directory.record_refund(order_id="ORD-10024", amount_cents=500, reference="re_1", reason="")
    assert Refund.objects.get().order == order


@pytest.mark.django_db(transaction=True)
def test_concurrent_records_of_one_refund_keep_one_row(order):
    import threading

    from django.db import connection

    if connection.vendor == "sqlite":
        pytest.skip("SQLite serialises writers; real concurrency is tested on PostgreSQL")
    barrier = threading.Barrier(6)
    errors = []

    def record():
        try:
            barrier.wait()
            ShopOrderDirectory().record_refund(
                order_id="ORD-10023", amount_cents=500, reference="re_1", reason="x"
            )
        except Exception as exc:  # collected, and asserted to be none, below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=record) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert Refund.objects.filter(reference="re_1").count() == 1
