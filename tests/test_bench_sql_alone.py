"""agentops' SQL on its own: a ticket's round trips recorded, replayed, and benchmarked."""

import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection

from agentops.bench.replayed import NotRecorded, recording, replay
from agentops.bench.runner import price_like_production, tickets_create, workload_settings
from agentops.models import Effect, Run, Turn
from agentops.runtime.loop import run_advance
from agentops.shop.models import Order, Refund
from agentops.simgateway.models import ProviderRefund
from tests.runtime.test_hot_path import ROUND_TRIPS
from traces.models import Span


def _real_services() -> bool:
    return connection.vendor == "postgresql" and not settings.CELERY_BROKER_URL.startswith(
        "filesystem"
    )


def _written(run_id: int, order: Order) -> dict:
    """What a ticket wrote, without the ids the database generates."""
    return {
        "run": Run.objects.filter(pk=run_id).values().get(),
        "turns": list(Turn.objects.filter(run_id=run_id).order_by("seq").values("seq", "message")),
        "spans": sorted(
            Span.objects.filter(run_id=run_id).values(
                "span_id", "parent_span_id", "kind", "name", "status", "input", "output", "cost"
            ),
            key=lambda span: span["span_id"],
        ),
        "effects": list(
            Effect.objects.filter(run_id=run_id)
            .order_by("created_at")
            .values("idempotency_key", "tool", "status", "result", "provider_ref")
        ),
        "provider": list(
            ProviderRefund.objects.filter(payment_ref=order.payment_ref).values(
                "refund_id", "amount_cents", "idempotency_key"
            )
        ),
        "shop": list(Refund.objects.filter(order=order).values("reference", "amount_cents")),
    }


def _undo(run_id: int, order: Order, run_before: dict) -> None:
    Span.objects.filter(run_id=run_id).delete()
    Turn.objects.filter(run_id=run_id).delete()
    Effect.objects.filter(run_id=run_id).delete()
    ProviderRefund.objects.filter(payment_ref=order.payment_ref).delete()
    Refund.objects.filter(order=order).delete()
    Run.objects.filter(pk=run_id).update(**run_before)


@pytest.mark.django_db(transaction=True)
def test_a_replayed_ticket_writes_again_what_the_ticket_wrote():
    if connection.vendor != "postgresql":
        pytest.skip("the hot path sends its queries through agentops.db.batch on PostgreSQL")
    price_like_production()
    warm_up, run_id = tickets_create(2, tag=uuid.uuid4().hex[:8])
    order = Order.objects.get(order_id=Run.objects.get(pk=run_id).ticket.subject.split()[-1])
    run_before = Run.objects.filter(pk=run_id).values().get()
    with workload_settings():
        run_advance(run_id=warm_up, worker="warm")
        with recording() as trips:
            assert run_advance(run_id=run_id, worker="recorded") == Run.Status.RESOLVED
    written = _written(run_id, order)
    effect_ids = set(Effect.objects.filter(run_id=run_id).values_list("pk", flat=True))
    assert len(trips) == ROUND_TRIPS
    assert len(written["spans"]) > 10 and len(written["effects"]) == 2
    assert written["provider"] and written["shop"]

    _undo(run_id, order, run_before)
    assert Run.objects.get(pk=run_id).status == Run.Status.QUEUED
    replay(trips)

    assert _written(run_id, order) == written
    # The ledger rows are new rows, and each was completed by the replay's own UPDATE.
    assert not effect_ids & set(Effect.objects.filter(run_id=run_id).values_list("pk", flat=True))


@pytest.mark.django_db
def test_a_query_the_replay_would_not_send_fails_the_recording():
    with (
        pytest.raises(NotRecorded, match="1 queries outside agentops.db.batch"),
        recording(),
        connection.cursor() as cursor,
    ):
        cursor.execute("SELECT 1")


@pytest.mark.django_db
def test_it_refuses_to_measure_on_the_embedded_defaults():
    if _real_services():
        pytest.skip("this pass has PostgreSQL and a real broker")
    with pytest.raises(CommandError, match="PostgreSQL|real broker"):
        call_command("bench_sql_alone", tickets=1, rounds=1)


@pytest.mark.django_db
@pytest.mark.parametrize("counts", [{"rounds": 0}, {"tickets": 0}, {"latency_tickets": 0}])
def test_it_refuses_counts_it_cannot_take_a_median_of(counts):
    if not _real_services():
        pytest.skip("the checks of the services come first (the CI's second pass)")
    with pytest.raises(CommandError, match="take 1 or more"):
        call_command("bench_sql_alone", **counts)
    assert not Run.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_it_prints_the_floor_the_sql_alone_and_agentops_from_one_run(capsys):
    if not _real_services():
        pytest.skip("the benchmark needs PostgreSQL and a real broker (the CI's second pass)")
    name = connection.settings_dict["NAME"]
    call_command("bench_sql_alone", tickets=4, rounds=2, warmup=1, latency_tickets=2)

    out = capsys.readouterr().out
    assert f"recorded here: 11 tickets, {ROUND_TRIPS} round trips" in out
    assert "round 2: floor " in out
    ratios = next(line for line in out.splitlines() if line.startswith("ratio to the floor"))
    assert ratios.split()[4] == "1.00" and len(ratios.split()) == 7
    assert "worker pool processes" in out and "Celery parent process" in out
    assert "one at a time (2 tickets of each kind, in turn)" in out
    p50 = next(line for line in out.splitlines() if line.strip().startswith("p50"))
    assert all(float(ms) > 0 for ms in p50.split()[1:]) and len(p50.split()) == 4
    # The run happened on a copy, dropped since; this database holds only the recording's
    # tickets as run here (and the warm-up's), the replayed and the others still queued.
    assert connection.settings_dict["NAME"] == name
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [f"{name}_sql_alone"])
        assert cursor.fetchone() is None
    assert Run.objects.filter(status=Run.Status.RESOLVED).count() == 12
    assert Run.objects.filter(status=Run.Status.QUEUED).count() == 11
    assert not list(Path(settings.VAR_DIR).glob("bench-sql-alone-*"))
