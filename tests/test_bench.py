"""The benchmark command: it refuses what it cannot measure, and prints every figure."""

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection


def _real_services() -> bool:
    return connection.vendor == "postgresql" and not settings.CELERY_BROKER_URL.startswith(
        "filesystem"
    )


@pytest.mark.django_db
def test_it_refuses_to_measure_on_the_embedded_defaults():
    if _real_services():
        pytest.skip("runs on the embedded defaults only; the PostgreSQL pass runs the bench")
    with pytest.raises(CommandError, match="PostgreSQL|real broker"):
        call_command("bench", tickets=1, rounds=1)


@pytest.mark.django_db(transaction=True)
def test_it_prints_throughput_latency_writes_and_memory_against_the_floor(capsys):
    if not _real_services():
        pytest.skip("the benchmark needs PostgreSQL and a real broker (the CI's second pass)")
    call_command("bench", tickets=5, rounds=1, warmup=2, latency_tickets=3)

    out = capsys.readouterr().out
    for figure in (
        "tickets/s (median)",
        "ratio agentops / floor",
        "write transactions / ticket",
        "WAL bytes / ticket",
        "enqueue -> resolved",
        "worker RSS",
    ):
        assert figure in out
