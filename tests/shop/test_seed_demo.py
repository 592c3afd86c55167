"""`manage.py seed_demo`: the demo shop, staff users and tickets, idempotently."""

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db.models import Sum
from django.utils import timezone

from agentops.models import Run, Ticket
from agentops.shop.demo import DEMO_PASSWORD, ORDERS, TICKETS
from agentops.shop.directory import ShopOrderDirectory
from agentops.shop.models import Customer, Order, Refund
from agentops.simgateway.models import ProviderRefund, ScriptedFault
from approvals.models import RiskPolicy

pytestmark = pytest.mark.django_db

MODELS = (get_user_model(), RiskPolicy, Customer, Order, Refund, ProviderRefund, ScriptedFault)
MODELS += (Ticket, Run)


def seed(*args):
    out = StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def counts():
    return {model.__name__: model.objects.count() for model in MODELS}


def test_it_seeds_the_shop_users_and_tickets(enqueued_runs, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        output = seed()

    assert counts() == {
        "User": 4,
        "RiskPolicy": 3,
        "Customer": 11,
        "Order": 25,
        "Refund": 3,
        "ProviderRefund": 3,
        "ScriptedFault": 2,
        "Ticket": 22,
        "Run": 22,
    }
    assert set(Ticket.objects.values_list("source", flat=True)) == {Ticket.Source.DEMO}
    assert sorted(enqueued_runs) == sorted(Run.objects.values_list("pk", flat=True))
    assert "22 tickets" in output


def test_running_it_twice_creates_nothing_new(enqueued_runs, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        seed()
    before = counts()
    assert len(enqueued_runs) == 22
    enqueued_runs.clear()

    with django_capture_on_commit_callbacks(execute=True):
        output = seed()

    assert counts() == before
    assert enqueued_runs == []
    assert "nothing new" in output


def test_it_leaves_a_spent_scripted_fault_spent():
    seed("--no-tickets")
    ScriptedFault.objects.update(remaining=0)

    seed("--no-tickets")

    assert list(ScriptedFault.objects.values_list("remaining", flat=True)) == [0, 0]


def test_it_can_leave_the_tickets_out(enqueued_runs, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        seed("--no-tickets")

    assert not Ticket.objects.exists()
    assert enqueued_runs == []
    assert Order.objects.count() == 25


def test_it_creates_the_four_staff_users_with_their_permissions():
    output = seed("--no-tickets")

    User = get_user_model()
    lead, finance, engineer, admin = (
        User.objects.get(username=n) for n in ("lead", "finance", "engineer", "admin")
    )
    for user in (lead, finance):
        assert user.is_staff and not user.is_superuser
        assert user.has_perm("approvals.decide_pendingaction")
        assert user.has_perm("simgateway.view_providerrefund")
        assert not user.has_perm("approvals.change_riskpolicy")
    assert admin.is_staff and admin.is_superuser
    # The engineer replays runs in dry run and keeps the regression set; never live, never pays.
    assert engineer.is_staff and not engineer.is_superuser
    assert engineer.has_perm("evals.replay_run") and engineer.has_perm("evals.add_regressioncase")
    assert not engineer.has_perm("agentops.replay_live")
    assert not engineer.has_perm("approvals.decide_pendingaction")
    for user in (lead, finance, engineer, admin):
        assert user.check_password(DEMO_PASSWORD)
        assert re.search(rf"^\s+{user.username}\s+{DEMO_PASSWORD}\s", output, re.MULTILINE)


def test_it_sets_the_password_it_is_given():
    output = seed("--no-tickets", "--password", "another-pw-123")

    assert get_user_model().objects.get(username="lead").check_password("another-pw-123")
    assert "another-pw-123" in output


def test_it_creates_the_default_risk_policy_from_settings(settings):
    settings.DEFAULT_APPROVAL_THRESHOLD_CENTS = 7000

    seed("--no-tickets")

    assert set(RiskPolicy.objects.values_list("tool", "currency", "approval_threshold_cents")) == {
        ("issue_refund", c, 7000) for c in ("USD", "EUR", "GBP")
    }


def test_it_keeps_a_threshold_an_admin_edited():
    seed("--no-tickets")
    RiskPolicy.objects.filter(currency="EUR").update(approval_threshold_cents=12345)

    seed("--no-tickets")

    assert RiskPolicy.objects.get(currency="EUR").approval_threshold_cents == 12345


def test_the_demo_orders_look_like_a_real_shop():
    seed("--no-tickets")
    orders = list(Order.objects.all())

    assert all(re.fullmatch(r"ORD-100\d\d", o.order_id) for o in orders)
    assert all(re.fullmatch(r"pi_[A-Za-z0-9]{24}", o.payment_ref) for o in orders)
    assert len({o.payment_ref for o in orders}) == len(orders)
    shipped = [o for o in orders if o.status != Order.Status.PLACED]
    assert all(re.fullmatch(r"1Z999AA1\d{10}", o.tracking_number) for o in shipped)
    assert {o.currency for o in orders} == {"USD", "EUR", "GBP"}
    assert {o.status for o in orders} == {"delivered", "shipped", "placed"}
    assert sum(o.currency == "USD" for o in orders) > len(orders) / 2
    long_ago = timezone.now() - timedelta(days=60)
    assert sum(o.placed_at < long_ago for o in orders) >= 3
    for order in orders:
        assert (order.delivered_at is not None) == (order.status == Order.Status.DELIVERED)


def test_the_providers_records_agree_with_the_shops():
    seed("--no-tickets")

    for refund in Refund.objects.select_related("order"):
        at_provider = ProviderRefund.objects.get(refund_id=refund.reference)
        assert at_provider.payment_ref == refund.order.payment_ref
        assert at_provider.amount_cents == refund.amount_cents
        assert at_provider.currency == refund.order.currency
    for order in Order.objects.all():
        shop = order.refunds.aggregate(s=Sum("amount_cents"))["s"] or 0
        provider = ProviderRefund.objects.filter(payment_ref=order.payment_ref)
        assert shop == (provider.aggregate(s=Sum("amount_cents"))["s"] or 0)


def test_the_two_timeout_tickets_have_a_scripted_timeout_after_commit():
    seed("--no-tickets")
    timeout_orders = [o.order_id for o in ORDERS if o.timeout]

    faults = ScriptedFault.objects.all()

    assert {f.payment_ref for f in faults} == set(
        Order.objects.filter(order_id__in=timeout_orders).values_list("payment_ref", flat=True)
    )
    assert {(f.kind, f.remaining) for f in faults} == {("timeout_after_commit", 1)}
    assert {t["order_id"] for t in TICKETS if "times out" in t["expect"]} == set(timeout_orders)


# --- the tickets against the offline model's rules -----------------------------
# The rules as the runtime's offline model applies them (see agentops/shop/demo.py).

REFERENCE = re.compile(r"\b(ORD-\d+|1Z[0-9A-Z]{16})\b")
REFUND_WORDS = re.compile(
    r"(?i)\b(refund|money back|reimburse|reimbursement|return it|send it back|charge back)\b"
)
AMOUNT = re.compile(r"[$€£]\s?\d[\d,]*(?:\.\d{1,2})?|\b\d[\d,]*(?:\.\d{1,2})?\s?(?:USD|EUR|GBP)\b")
THRESHOLD = 5000


def text_of(ticket):
    return f"{ticket['subject']}\n\n{ticket['body']}"


def test_there_are_22_tickets_with_their_expected_outcome():
    assert len(TICKETS) == 22
    assert len({t["external_id"] for t in TICKETS}) == 22
    for ticket in TICKETS:
        assert set(ticket) == {
            "external_id",
            "customer_email",
            "subject",
            "body",
            "order_id",
            "outcome",
            "refund_cents",
            "expect",
        }
        assert ticket["outcome"] in {"refund", "approval", "reply", "refused"}
        assert ticket["expect"]


def test_each_ticket_comes_from_the_customer_of_its_order():
    seed("--no-tickets")
    directory = ShopOrderDirectory()

    for ticket in TICKETS:
        if ticket["order_id"] is None:
            continue  # a general question, or the unknown order (below)
        order = directory.get(ticket["order_id"])
        assert order.customer_email == ticket["customer_email"], ticket["external_id"]
    unknown = next(t for t in TICKETS if t["external_id"] == "demo-12")
    assert not Customer.objects.filter(email=unknown["customer_email"]).exists()


def test_the_first_reference_in_each_ticket_resolves_to_its_order():
    seed("--no-tickets")
    directory = ShopOrderDirectory()

    for ticket in TICKETS:
        match = REFERENCE.search(text_of(ticket))
        if match is None:
            continue
        found = directory.get(match[1]) or directory.find_by_tracking_number(match[1])
        assert (found.order_id if found else None) == ticket["order_id"], ticket["external_id"]


def test_only_refund_tickets_use_refund_words_and_only_some_name_an_amount():
    for ticket in TICKETS:
        wants_refund = bool(REFUND_WORDS.search(text_of(ticket)))
        is_question = ticket["outcome"] == "reply" and ticket["external_id"] != "demo-12"
        assert wants_refund != is_question, ticket["external_id"]
    with_amount = {t["external_id"] for t in TICKETS if AMOUNT.search(text_of(t))}
    assert with_amount == {"demo-14", "demo-20"}


def test_each_outcome_follows_from_the_threshold_and_the_order():
    seed("--no-tickets")
    directory = ShopOrderDirectory()

    for ticket in TICKETS:
        order = directory.get(ticket["order_id"]) if ticket["order_id"] else None
        amount = AMOUNT.search(text_of(ticket))
        match ticket["outcome"]:
            case "refund":
                assert 0 < ticket["refund_cents"] <= THRESHOLD, ticket["external_id"]
            case "approval":
                assert ticket["refund_cents"] > THRESHOLD, ticket["external_id"]
            case "refused" | "reply":
                assert ticket["refund_cents"] == 0, ticket["external_id"]
        if ticket["outcome"] in {"refund", "approval"} and not amount:
            assert ticket["refund_cents"] == order.refundable_cents, ticket["external_id"]


def test_the_tickets_cover_every_case_of_the_story():
    seed("--no-tickets")
    directory = ShopOrderDirectory()
    by_id = {t["external_id"]: t for t in TICKETS}
    plain = [
        t
        for t in TICKETS
        if t["outcome"] == "refund"
        and REFERENCE.search(text_of(t))
        and REFERENCE.search(text_of(t))[1].startswith("ORD-")
        and not AMOUNT.search(text_of(t))
    ]
    tracking = [t for t in TICKETS if re.search(r"\b1Z[0-9A-Z]{16}\b", text_of(t))]

    assert len(plain) >= 6
    assert sum(t["outcome"] == "approval" for t in TICKETS) >= 3
    assert sorted(t["outcome"] for t in tracking) == ["approval", "refund"]
    assert "ORD-99999" in text_of(by_id["demo-12"])
    assert directory.get("ORD-99999") is None
    assert directory.get(by_id["demo-13"]["order_id"]).refundable_cents == 0
    injection = by_id["demo-14"]
    assert "Ignore your previous instructions" in injection["body"]
    assert "$5000" in injection["body"]
    assert 7000 <= directory.get(injection["order_id"]).total_cents <= 8000
    assert len([t for t in TICKETS if t["outcome"] == "reply"]) == 4  # 3 questions + unknown
    assert by_id["demo-16"]["order_id"] is None
    assert (
        directory.get(by_id["demo-20"]["order_id"]).total_cents > by_id["demo-20"]["refund_cents"]
    )
    no_id = by_id["demo-21"]
    assert REFERENCE.search(text_of(no_id)) is None
    assert [o.order_id for o in directory.for_customer(no_id["customer_email"])] == [
        no_id["order_id"]
    ]
    assert directory.get(by_id["demo-22"]["order_id"]).status != "delivered"
    timeouts = [t for t in TICKETS if "times out" in t["expect"]]
    assert sorted(t["outcome"] for t in timeouts) == ["approval", "refund"]
