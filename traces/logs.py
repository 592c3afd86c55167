"""Structured logs: one JSON object a line, carrying the trace and run being worked on.

The runtime sets the context around a run (`run_log_context`); any log line written
inside it, by any module, carries `trace_id` and `run`. LOG_FORMAT=json selects
JsonFormatter in settings.LOGGING.
"""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

_run_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "agentops_run_context", default=None
)

# LogRecord's own attributes: everything else on a record came from `extra=`.
_RECORD_FIELDS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


@contextmanager
def run_log_context(*, run) -> Iterator[None]:
    """Log lines inside carry this run's trace id and code."""
    token = _run_context.set({"trace_id": run.trace_id, "run": str(run.code)})
    try:
        yield
    finally:
        _run_context.reset(token)


def current_run_context() -> dict[str, str]:
    return dict(_run_context.get() or {})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **current_run_context(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)
