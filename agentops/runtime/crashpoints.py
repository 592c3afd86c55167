"""Crash points: a test hook that makes a worker die with SIGKILL at a named point of a run.

Why a hook in the runtime, rather than killing a worker from outside at a guessed
moment: the interesting moments (after the model answered but before the answer
was saved; after the provider committed a refund but before the ledger knew) last
microseconds. A kill from outside lands on one of them by luck; a crash point lands
on it every time, so each test proves one exact window. It is still a real crash:
the process sends itself SIGKILL, so no `finally`, no rollback handler, no atexit
and no Celery signal runs; the broker and the database see exactly what they see
when the machine loses power under the worker.

Why it cannot fire by accident in production: it is off unless CRASH_POINT names
one of POINTS, and settings.py refuses to start with CRASH_POINT set together with
HTTPS=true (which production needs: `check --deploy` insists) or with a real
payment provider (PAYMENTS_BACKEND=stripe). A misspelt name stops start-up too,
so a test cannot believe it crashed a worker that never crashed.

This module imports nothing from Django at load time: settings.py reads POINTS.
"""

from __future__ import annotations

import os
import signal

BEFORE_MODEL_CALL = "before_model_call"  # the model span is open, the request not sent
AFTER_MODEL_CALL = "after_model_call"  # the model answered, its answer is not saved
AFTER_LEDGER_WRITE = "after_ledger_write"  # the ledger row says started, the provider not called
AFTER_GATEWAY_COMMIT = "after_gateway_commit"  # the provider committed, the ledger not completed

POINTS = (BEFORE_MODEL_CALL, AFTER_MODEL_CALL, AFTER_LEDGER_WRITE, AFTER_GATEWAY_COMMIT)


def crash_point(name: str) -> None:
    """Die here, at once and without cleaning up, if CRASH_POINT names this point."""
    from django.conf import settings

    if name == settings.CRASH_POINT:
        os.kill(os.getpid(), signal.SIGKILL)
