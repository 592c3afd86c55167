"""orders_import and `manage.py import_orders`: every bad line reported, all or nothing."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from agentops.shop.management.commands.import_orders import Command as ImportOrders
from agentops.shop.models import Customer, Order
from agentops.shop.services import orders_import

pytestmark = pytest.mark.django_db


def order_line(**overrides):
    line = {
        "order_id": "ORD-20001",
        "customer_email": "grace@example.com",
        "customer_name": "Grace Hopper",
        "total_cents": 4599,
        "currency": "usd",
        "status": "delivered",
        "placed_at": "2026-01-05T10:00:00Z",
        "delivered_at": "2026-01-09T16:30:00+01:00",
        "tracking_number": "1Z999AA10000020001",
        "payment_ref": "pi_3PgraceAAAAAAAAAAAAAAAAA",
    }
    line.update(overrides)
    return json.dumps({k: v for k, v in line.items() if v is not ...})


def good_lines():
    return [
        order_line(),
        order_line(
            order_id="ORD-20002",
            total_cents=1250,
            status="shipped",
            delivered_at=None,
            tracking_number="1Z999AA10000020002",
            payment_ref="pi_3PgraceBBBBBBBBBBBBBBBBB",
        ),
        order_line(
            order_id="ORD-20003",
            customer_email="alan@example.com",
            customer_name="Alan Turing",
            currency="EUR",
            status="placed",
            delivered_at=...,
            tracking_number=...,
            payment_ref="pi_3PalanCCCCCCCCCCCCCCCCCC",
        ),
    ]


def errors_for(*lines):
    report = orders_import(lines=lines)
    assert not report.ok
    return [str(error) for error in report.errors]


def test_it_imports_orders_and_their_customers():
    report = orders_import(lines=good_lines())

    assert report.ok
    assert (report.orders, report.customers, report.new_customers) == (3, 2, 2)
    order = Order.objects.get(order_id="ORD-20001")
    assert order.customer.name == "Grace Hopper"
    assert order.currency == "USD"
    assert order.total_cents == 4599
    assert order.delivered_at.isoformat() == "2026-01-09T15:30:00+00:00"
    assert Order.objects.get(order_id="ORD-20003").tracking_number is None
    assert Customer.objects.get(email="grace@example.com").orders.count() == 2


def test_it_reuses_a_customer_by_email():
    Customer.objects.create(email="grace@example.com", name="Grace B. Hopper")

    report = orders_import(lines=[order_line(customer_email="GRACE@example.com")])

    assert (report.orders, report.customers, report.new_customers) == (1, 1, 0)
    assert Customer.objects.count() == 1
    assert Order.objects.get().customer.name == "Grace B. Hopper"


def test_it_normalises_ids_and_tracking_numbers():
    orders_import(
        lines=[order_line(order_id=" ord-20001 ", tracking_number="1z999aa1 0000 020001")]
    )

    order = Order.objects.get()
    assert (order.order_id, order.tracking_number) == ("ORD-20001", "1Z999AA10000020001")


def test_it_ignores_blank_lines_but_counts_them():
    lines = ["\n", order_line() + "\n", "   \n", order_line(total_cents=0) + "\n"]

    assert errors_for(*lines) == ["line 4: total_cents: Input should be greater than 0"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "Invalid JSON"),
        ("[1, 2]", "Input should be an object"),
        (order_line(order_id=...), "order_id: Field required"),
        (order_line(payment_ref=...), "payment_ref: Field required"),
        (order_line(order_id="10023"), "order_id: must look like ORD-10023, got '10023'"),
        (order_line(customer_email="grace"), "customer_email: not a valid email address"),
        (order_line(customer_name=""), "customer_name: String should have at least 1 character"),
        (order_line(total_cents=0), "total_cents: Input should be greater than 0"),
        (order_line(total_cents=-5), "total_cents: Input should be greater than 0"),
        (order_line(total_cents=12.5), "total_cents: Input should be a valid integer"),
        (order_line(total_cents="4599"), "total_cents: Input should be a valid integer"),
        (order_line(currency="dollars"), "currency: must be a 3-letter ISO code"),
        (order_line(currency="U$D"), "currency: must be a 3-letter ISO code"),
        (order_line(status="lost"), "status: must be one of placed, shipped, delivered, cancelled"),
        (order_line(placed_at="2026-01-05T10:00:00"), "placed_at: Input should have timezone"),
        (order_line(placed_at="yesterday"), "placed_at: Input should be a valid datetime"),
        (order_line(placed_at=1767607200), "placed_at: Input should be a valid datetime"),
        (
            order_line(delivered_at="2026-01-01T00:00:00Z"),
            "delivered_at is before placed_at",
        ),
        (order_line(delivered_at=None), "a delivered order needs delivered_at"),
        (order_line(status="shipped"), "a shipped order cannot have delivered_at"),
        (order_line(tracking_number="1Z-99"), "tracking_number: must be 6 to 64 letters"),
        (order_line(payment_ref="pi 3"), "payment_ref: must be 3 to 64 letters"),
        (order_line(colour="red"), "colour: Extra inputs are not permitted"),
    ],
)
def test_it_reports_a_bad_line_by_its_number(line, message):
    errors = errors_for(order_line(order_id="ORD-1"), line)

    assert len(errors) == 1
    assert errors[0].startswith("line 2: ")
    assert message in errors[0]
    assert not Order.objects.exists()


def test_it_reports_duplicates_within_the_file():
    errors = errors_for(
        order_line(),
        order_line(tracking_number="1Z999AA10000099999", payment_ref="pi_3Pother"),
        order_line(order_id="ORD-20009", payment_ref="pi_3Pthird"),
        order_line(order_id="ORD-20010", tracking_number=...),
    )

    assert errors == [
        "line 2: order_id ORD-20001 is already on line 1",
        "line 3: tracking_number 1Z999AA10000020001 is already on line 1",
        "line 4: payment_ref pi_3PgraceAAAAAAAAAAAAAAAAA is already on line 1",
    ]


def test_it_reports_orders_tracking_numbers_and_payments_already_stored():
    orders_import(lines=[order_line()])

    errors = errors_for(
        order_line(tracking_number="1Z999AA10000099998", payment_ref="pi_3Pnew1"),
        order_line(order_id="ORD-20008", payment_ref="pi_3Pnew2"),
        order_line(order_id="ORD-20009", tracking_number="1Z999AA10000099999"),
    )

    assert errors == [
        "line 1: order ORD-20001 already exists",
        "line 2: tracking_number 1Z999AA10000020001 already belongs to ORD-20001",
        "line 3: payment_ref pi_3PgraceAAAAAAAAAAAAAAAAA is already used by ORD-20001",
    ]
    assert Order.objects.count() == 1


def test_it_reports_every_bad_line_and_imports_nothing():
    lines = [*good_lines(), order_line(order_id="ORD-20004", currency="XX"), "oops"]

    errors = errors_for(*lines)

    assert [e.split(":")[0] for e in errors] == ["line 4", "line 5"]
    assert not Order.objects.exists()
    assert not Customer.objects.exists()


def test_the_command_prints_a_summary(tmp_path):
    path = tmp_path / "orders.jsonl"
    path.write_text("\n".join(good_lines()) + "\n", encoding="utf-8")
    out = StringIO()

    call_command("import_orders", str(path), stdout=out)

    assert "imported 3 orders for 2 customers" in out.getvalue()
    assert Order.objects.count() == 3


def test_the_command_fails_with_every_error_on_stderr(tmp_path):
    path = tmp_path / "orders.jsonl"
    path.write_text("\n".join([*good_lines(), order_line(total_cents=0)]), encoding="utf-8")
    err = StringIO()

    with pytest.raises(CommandError, match="nothing was imported"):
        call_command("import_orders", str(path), stderr=err)

    assert "line 4: total_cents: Input should be greater than 0" in err.getvalue()
    assert not Order.objects.exists()


def test_the_command_fails_for_a_missing_file(tmp_path):
    with pytest.raises(CommandError, match="cannot read"):
        call_command("import_orders", str(tmp_path / "missing.jsonl"))


def test_the_command_exits_non_zero_from_the_shell(tmp_path, capsys, monkeypatch):
    """Run as from manage.py, where Django turns the CommandError into exit status 1."""
    # run_from_argv closes every connection when done, the test's own included.
    monkeypatch.setattr("django.core.management.base.connections.close_all", lambda: None)
    path = tmp_path / "orders.jsonl"
    path.write_text("{not json}\n", encoding="utf-8")

    with pytest.raises(SystemExit) as exited:
        ImportOrders().run_from_argv(["manage.py", "import_orders", "--skip-checks", str(path)])

    assert exited.value.code == 1
    assert "line 1: Invalid JSON" in capsys.readouterr().err
    assert not Order.objects.exists()


def test_it_imports_nothing_when_a_clash_appears_after_validation(monkeypatch):
    """Another writer stored a clashing order between our checks and our write."""
    orders_import(lines=[order_line()])
    monkeypatch.setattr("agentops.shop.services._clashes", lambda parsed: [])
    lines = [
        order_line(
            order_id="ORD-20002",
            customer_email="new@example.com",
            tracking_number="1Z999AA10000020002",
            payment_ref="pi_3Pnew",
        ),
        order_line(),
    ]

    report = orders_import(lines=lines)

    assert not report.ok
    assert "nothing imported" in str(report.errors[0])
    assert list(Order.objects.values_list("order_id", flat=True)) == ["ORD-20001"]
    assert not Customer.objects.filter(email="new@example.com").exists()
