"""The chaos run: its counters, and a CI-sized run with real workers killed while they work."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection

from agentops.chaos import ChaosConfig, chaos_run, duplicate_refunds, silent_failures, summary
from agentops.models import Run
from agentops.services import ticket_submit
from agentops.simgateway.models import ProviderRefund


def _provider_refund(ticket: str, order: str, amount: int, n: int) -> None:
    ProviderRefund.objects.create(
        refund_id=f"re_test{n}",
        payment_ref=f"pi_{order}",
        amount_cents=amount,
        currency="USD",
        metadata={"ticket": ticket, "order": order},
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def test_duplicates_are_counted_in_the_providers_records(db):
    _provider_refund("t1", "ORD-1", 1000, 1)
    _provider_refund("t1", "ORD-1", 1000, 2)  # paid twice
    _provider_refund("t1", "ORD-1", 1000, 3)  # and three times
    _provider_refund("t2", "ORD-2", 500, 4)
    _provider_refund("t3", "ORD-3", 500, 5)
    _provider_refund("t3", "ORD-3", 500, 6)  # not one of ours

    assert duplicate_refunds(tickets=["t1", "t2"]) == 2
    assert duplicate_refunds(tickets=["t2"]) == 0


def _run_with_reply(reply: str) -> Run:
    run = ticket_submit(customer_email="s@example.com", subject="s", body="b").run
    Run.objects.filter(pk=run.pk).update(reply=reply, status=Run.Status.RESOLVED)
    return run


def test_a_reply_claiming_a_refund_the_provider_does_not_hold_is_a_silent_failure(db):
    lying = _run_with_reply("I've issued a refund of $20.00 for order ORD-1.")
    other_amount = _run_with_reply("I've issued a refund of $20.00 for order ORD-2.")
    _provider_refund(str(other_amount.ticket.code), "ORD-2", 1500, 1)
    honest = _run_with_reply("I've issued a refund of $15.00 for order ORD-3.")
    _provider_refund(str(honest.ticket.code), "ORD-3", 1500, 2)
    _run_with_reply("I'm sorry, but we're unable to issue a refund for order ORD-4.")
    _run_with_reply("")

    found = silent_failures(runs=Run.objects.all())

    assert [line.split(":")[0] for line in found] == [f"run {lying.pk}", f"run {other_amount.pk}"]
    assert "the provider holds no refund" in found[0]
    assert "the provider refunded [1500]" in found[1]


@pytest.mark.worker
def test_a_small_chaos_run_loses_nothing_pays_nothing_twice_and_hides_no_failure(
    transactional_db, capsys
):
    if connection.vendor != "postgresql" or settings.CELERY_BROKER_URL.startswith("filesystem"):
        pytest.skip(
            "the chaos run needs PostgreSQL and a real broker (CI's second pass runs it): "
            "concurrent workers being killed is what it tests"
        )
    config = ChaosConfig(
        tickets=80,
        workers=3,
        kill_every=2.0,
        timeout_after_commit=0.1,
        p429=0.03,
        p500=0.03,
        legacy_provider=True,
        seed=7,
        lease_seconds=5,
        stale_seconds=10,
        deadline=150,
        model_latency_ms=10,
    )

    report = chaos_run(config, out=lambda line: None)

    with capsys.disabled():
        print(f"\n{report.table()}\n{summary(report)}")
    assert (report.lost, report.duplicate_refunds, report.silent_failures) == (0, 0, 0), (
        report.silent_examples
    )
    assert report.resolved + report.escalated + report.failed == config.tickets
    assert report.awaiting_approval == 0  # every approval was decided and its run finished
    # The faults really happened: workers died mid-run, the provider timed out after
    # committing (a legacy provider would have paid again), and refunds went through.
    assert sum(report.kills.values()) >= 2  # a kill every 2 s; a fast machine sees fewer
    assert report.retries > 0
    assert report.provider_refunds >= config.tickets // 2
    # Each call cost money, and the day's counter recorded exactly what the runs cost.
    assert report.runs_cost > 0 and report.spend_recorded == report.runs_cost
    # Every span's pointers resolve (turns, ledger rows, tool results), however killed.
    assert report.unreadable_spans == 0, report.unreadable_examples
    assert report.clean
    assert report.resolved >= config.tickets * 0.8


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tickets", "0"], "at least 1"),
        (["--model-latency-ms", "-5"], "between 0 and 60000"),
    ],
)
def test_the_command_refuses_bad_arguments_before_starting_anything(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("chaos", *args)


@pytest.mark.skipif(
    connection.vendor == "postgresql", reason="the refusal is for the embedded SQLite"
)
def test_the_command_refuses_the_embedded_defaults():
    with pytest.raises(CommandError, match="needs PostgreSQL"):
        call_command("chaos", "--tickets", "1")
