"""The admin-edited tables, kept per process for as long as the config token holds.

Database triggers (agentops.db.config_token) replace a random token on every write
of the tables (prompt versions, the autonomy share, risk policies and their changes,
model prices, routes). A task takes the token once, as a column of the claimed
run's row (config_token_column; config_token_read where there is no such query),
and gets the process's generation for it: what this process read of the tables
while the token was the same, or a new, empty generation when the token moved. A
change therefore applies from the next task on, at no read of its own per task.

A generation is only ever read after its token was: what it holds is as new as the
token or newer, never older. A write that lands between the two reads moves the
token, so the next task starts a new generation.

Bounded: one generation per process (the previous one is dropped as soon as the
token moves), at most MAX_ENTRIES named reads in it. Values are shared by every
task of the process until the token moves: callers read them, never change them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import connection
from django.db.models import CharField
from django.db.models.expressions import RawSQL

from agentops.db import config_token

# The token read, one row or none. It can ride on another statement of the task (the
# run's claim): select config_token_column() as one more column and hand
# config_token_parse(value) to read_once(config_token=...).
TOKEN_SQL = f"SELECT token FROM {config_token.TABLE} WHERE id = 1"  # noqa: S608

# Named reads a generation keeps: a handful of tables, and one entry per risk policy
# for its version in force. Past that, reads are not kept (read every time).
MAX_ENTRIES = 64


def config_token_column() -> RawSQL:
    """TOKEN_SQL as a column of another query: `.annotate(config_token=config_token_column())`."""
    return RawSQL(f"({TOKEN_SQL})", [], output_field=CharField())  # noqa: S611


def config_token_parse(value: Any) -> str | None:
    """The token from TOKEN_SQL's column (None: no row, nothing can be kept)."""
    return value if isinstance(value, str) and value else None


def config_token_read() -> str | None:
    with connection.cursor() as cursor:
        cursor.execute(TOKEN_SQL)
        row = cursor.fetchone()
    return config_token_parse(row[0] if row else None)


class Generation:
    """What one process read of the tables while the token was `token`."""

    __slots__ = ("token", "_entries")

    def __init__(self, token: str | None) -> None:
        self.token = token
        self._entries: dict[str, Any] = {}

    def get[T](self, name: str, load: Callable[[], T]) -> T:
        try:
            return self._entries[name]
        except KeyError:
            pass
        value = load()
        if len(self._entries) < MAX_ENTRIES:
            self._entries[name] = value
        return value

    def __len__(self) -> int:
        return len(self._entries)


# This process's generation: the only one kept.
_current: Generation | None = None


def config_generation(token: str | None) -> Generation:
    """The process's generation for `token`; a new one (replacing it) if the token moved.

    Without a token (no row: a flushed table before its next write) nothing is kept
    past the task: the generation returned is the task's own.
    """
    global _current
    if token is None:
        return Generation(None)
    current = _current
    if current is not None and current.token == token:
        return current
    current = _current = Generation(token)
    return current


def config_cache_clear() -> None:
    global _current
    _current = None
