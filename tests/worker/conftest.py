"""A real Celery worker process against the test database and the configured broker.

The worker consumes a queue of its own, so leftovers of a demo on the same
broker (or a parallel CI run) never reach it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from agentops.bench.runner import database_url, worker_argv
from agentops.celery import app as celery_app
from agentops.models import Run

ROOT = Path(__file__).resolve().parents[2]
WAITING = (Run.Status.QUEUED, Run.Status.RUNNING)
# One queue per test session, so a demo's leftovers on the same broker never reach it.
QUEUE = f"agentops-test-{uuid.uuid4().hex[:10]}"


class Worker:
    def __init__(self, queue: str, env: dict[str, str], concurrency: int) -> None:
        self.queue = queue
        self.log = Path(settings.VAR_DIR) / f"worker-{queue}.log"
        full_env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "AGENTOPS_VAR_DIR": str(settings.VAR_DIR),
            "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
            "RETRY_BASE_DELAY_SECONDS": "0.01",
            "RETRY_MAX_DELAY_SECONDS": "0.05",
            "OFFLINE_MODEL_LATENCY_MS": "0",
            **env,
        }
        self.process = subprocess.Popen(
            worker_argv(queue=queue, concurrency=concurrency, node=f"{queue}@%h", loglevel="INFO"),
            cwd=ROOT,
            env=full_env,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so kill() takes the pool too
        )

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log.read_text()[-3000:]}")
            if "ready." in self.log.read_text():
                return
            time.sleep(0.2)
        raise RuntimeError(f"worker not ready in {timeout}s:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the worker and its pool at once: no warm shutdown, nothing more runs."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def start_worker(transactional_db):
    """Start a worker with extra environment; tasks this test enqueues go to its queue."""
    workers: list[Worker] = []
    queue = QUEUE
    celery_app.conf.task_routes = {"agentops.tasks.*": {"queue": queue}}
    # Celery caches its routing table and router on first send; rebuild both.
    celery_app.amqp.flush_routes()
    celery_app.amqp.__dict__.pop("router", None)

    def start(*, env: dict[str, str] | None = None, concurrency: int = 2) -> Worker:
        worker = Worker(queue, env or {}, concurrency)
        workers.append(worker)
        worker.wait_ready()
        return worker

    yield start
    for worker in workers:
        worker.stop()


def wait_for_runs(*, timeout: float = 120, waiting=WAITING) -> list[Run]:
    """Poll until no run is queued or running; return all runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Run.objects.filter(status__in=waiting).exists():
            return list(Run.objects.select_related("ticket"))
        time.sleep(0.25)
    stuck = list(Run.objects.filter(status__in=waiting).values_list("pk", "status"))
    raise AssertionError(f"runs still unfinished after {timeout}s: {stuck}")
