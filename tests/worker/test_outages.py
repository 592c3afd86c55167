"""A real worker through outages: a failing model, the broker restarting, the database away.

Each outage is of a private part (a fake model server, a private redis-server, a TCP
proxy in front of PostgreSQL), never of the servers other tests share.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable

import pytest
from django.conf import settings

from agentops.bench.runner import database_url
from agentops.celery import app as celery_app
from agentops.models import Run
from agentops.runtime.sweeper import runs_sweep_stale
from agentops.services import ticket_submit
from agentops.shop.models import Customer, Order
from agentops.simgateway.models import ProviderRefund
from tests.fakes.messages_api import API_KEY, FakeMessagesAPI, offline_over_http
from tests.fakes.tcp_proxy import TcpProxy
from tests.worker.conftest import wait_for_runs
from traces.models import Span

pytestmark = [pytest.mark.worker]

QUESTION = "When will my parcel arrive? I ordered last week."


def _wait_until(predicate: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout}s: {what}")


def _submit(body: str = QUESTION, *, email: str = "out@example.com") -> Run:
    return ticket_submit(customer_email=email, subject="Help", body=body).run


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the model provider fails, then comes back ---------------------------------------------


def test_runs_parked_by_an_open_breaker_finish_by_themselves_when_the_model_returns(
    start_worker,
):
    with FakeMessagesAPI(default=offline_over_http) as api:
        api.rate_500 = 1.0  # every call is a 500: the provider is down
        start_worker(
            concurrency=1,
            env={
                "ANTHROPIC_API_KEY": API_KEY,
                "ANTHROPIC_BASE_URL": api.url,
                "ANTHROPIC_TIMEOUT_SECONDS": "5",
                "TRIAGE_MODEL": "offline",
                "AGENT_MODEL": "claude-sonnet-4-6",
                "RETRY_MAX_ATTEMPTS": "4",
                "BREAKER_FAILURE_THRESHOLD": "2",
                "BREAKER_COOL_DOWN_SECONDS": "3",
            },
        )
        runs = [_submit(email=f"out{n}@example.com") for n in range(3)]
        waits = Span.objects.filter(name="circuit_open model:anthropic")
        _wait_until(
            lambda: waits.values("run").distinct().count() == 3,
            timeout=60,
            what="every run parked by the open breaker",
        )

        # The first run's two failed attempts opened the breaker; the runs after it
        # parked before calling anything.
        parked_first = 0
        for run in runs:
            steps = run.spans.exclude(kind__in=["run", "triage"]).order_by("started_at", "id")
            if steps.first().name == "circuit_open model:anthropic":
                parked_first += 1
                assert steps.first().output["breaker_state"] == "open"
        assert parked_first == 2
        assert Run.objects.filter(status=Run.Status.RUNNING, lease_owner="").count() == 3

        api.rate_500 = 0.0  # the provider is back
        finished = wait_for_runs(timeout=90)

    assert [r.status for r in finished] == [Run.Status.RESOLVED] * 3, [
        r.outcome_reason for r in finished
    ]
    failed_calls = Span.objects.filter(kind="model", status="error").count()
    assert failed_calls == api.faults_served["500"]
    # Without the breaker each run would have spent its four attempts: twelve calls.
    assert failed_calls < waits.count()
    # The breaker closed again on a half-open probe that succeeded.
    answered = Span.objects.filter(kind="model", status="ok")
    assert any(s.attributes.get("breaker.probe") for s in answered)


# --- the broker restarts ------------------------------------------------------------------


class PrivateRedis:
    """A redis-server of this test's own, on a free port, with nothing kept on disk."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_until(self._answers, timeout=10, what="redis-server answers PING")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


@pytest.fixture
def private_redis(monkeypatch):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed: the broker outage needs a private one")
    server = PrivateRedis()
    server.start()
    # This process sends its tasks to the private server too.
    conf = celery_app.conf
    saved = {key: conf[key] for key in ("broker_url", "broker_transport_options")}
    conf.update(broker_url=server.url, broker_transport_options={"visibility_timeout": 3600})
    monkeypatch.setenv("CELERY_BROKER_URL", server.url)  # Celery reads it before its setting
    # Connections and producers are pooled per app: drop them, before and after.
    celery_app._pool = celery_app.amqp._producer_pool = None
    yield server
    conf.update(saved)
    celery_app._pool = celery_app.amqp._producer_pool = None
    server.stop()


def test_a_worker_carries_on_after_its_broker_restarts_and_no_ticket_is_lost(
    start_worker, private_redis, caplog, settings
):
    settings.RUN_STALE_SECONDS = 1
    worker = start_worker(concurrency=1, env={"CELERY_BROKER_URL": private_redis.url})
    before = _submit(email="before@example.com")
    wait_for_runs(timeout=60)

    private_redis.stop()
    during = _submit(email="during@example.com")  # stored; the broker refused its task
    assert "left for the sweeper" in caplog.text
    _wait_until(
        lambda: (
            "Cannot connect to redis" in worker.log.read_text()
            or "Connection to broker lost" in worker.log.read_text()
        ),
        timeout=30,
        what="the worker notices the broker is gone",
    )
    private_redis.start()  # empty: whatever it held is gone, as after a crash

    after = _submit(email="after@example.com")
    _wait_until(
        lambda: Run.objects.get(pk=after.pk).status == Run.Status.RESOLVED,
        timeout=90,
        what="the worker reconnected and ran a new ticket",
    )
    assert Run.objects.get(pk=during.pk).status == Run.Status.QUEUED
    # What beat has a worker do every 30 seconds (here, so its task reaches the test's queue).
    assert runs_sweep_stale() == [during.pk]
    wait_for_runs(timeout=60)

    statuses = {r.pk: r.status for r in Run.objects.all()}
    assert statuses == {
        before.pk: Run.Status.RESOLVED,
        during.pk: Run.Status.RESOLVED,
        after.pk: Run.Status.RESOLVED,
    }
    assert worker.process.poll() is None


# --- the database goes away ----------------------------------------------------------------


def _order(n: int) -> Order:
    from django.utils import timezone

    customer, _ = Customer.objects.get_or_create(email=f"db{n}@example.com", defaults={"name": "D"})
    return Order.objects.create(
        order_id=f"ORD-{40000 + n}",
        customer=customer,
        total_cents=1500 + n,
        currency="USD",
        status="delivered",
        placed_at=timezone.now(),
        delivered_at=timezone.now(),
        payment_ref=f"pi_dbout{n:018d}",
    )


def _no_other_sessions() -> bool:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0] == 0


@pytest.mark.skipif(
    not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"),
    reason="needs PostgreSQL (DATABASE_URL): a TCP proxy cuts a server's connections; "
    "the embedded SQLite is a file, with no connection to cut",
)
def test_a_worker_survives_the_database_going_away_and_its_runs_finish(start_worker):
    db = settings.DATABASES["default"]
    with TcpProxy(db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432)) as proxy:
        url = database_url().replace(f":{db['PORT'] or 5432}/", f":{proxy.port}/", 1)
        worker = start_worker(
            concurrency=2,
            env={"DATABASE_URL": url, "RUN_LEASE_SECONDS": "3", "OFFLINE_MODEL_LATENCY_MS": "200"},
        )
        orders = [_order(n) for n in range(4)]
        runs = [
            _submit(f"Please refund {o.order_id}, it broke.", email=o.customer.email)
            for o in orders
        ]
        _wait_until(
            lambda: Span.objects.filter(kind="model").exists(),
            timeout=60,
            what="runs under way",
        )

        proxy.cut()
        time.sleep(2)  # away for a while: every query of the worker fails meanwhile
        _wait_until(
            lambda: "OperationalError" in worker.log.read_text(),
            timeout=30,
            what="the worker felt the outage",
        )
        proxy.restore()
        finished = wait_for_runs(timeout=120)
        worker_survived = worker.process.poll() is None
        worker.stop()  # before its proxy goes
    # The server ends the worker's sessions a moment later; the test database can only
    # be dropped after that.
    _wait_until(_no_other_sessions, timeout=15, what="the worker's database sessions ended")

    assert worker_survived
    # The interrupted tasks were retried once their lease could be taken over.
    assert "retry: Retry in" in worker.log.read_text()

    assert sorted(r.pk for r in finished) == sorted(r.pk for r in runs)
    assert [r.status for r in finished] == [Run.Status.RESOLVED] * 4, [
        r.outcome_reason for r in finished
    ]
    for order in orders:
        assert ProviderRefund.objects.filter(payment_ref=order.payment_ref).count() == 1
