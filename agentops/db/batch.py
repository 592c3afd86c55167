"""One write transaction, one round trip.

A step of a run writes a few rows: the run's new state, its spans, a ledger row.
Sent one by one inside transaction.atomic(), each is a round trip of its own, and
so are BEGIN and COMMIT: on PostgreSQL a 3-statement transaction costs 5 round
trips, and about as much CPU in Django, psycopg and the server's per-message work
as in the statements themselves. Inside write_transaction() the hot path's writes
(agentops.db.hot) are collected and sent together when the block ends:

- PostgreSQL: one simple-protocol query holding every statement. The server runs
  such a query as one transaction (all or nothing) unless the query says BEGIN or
  COMMIT itself; inside an open transaction (an atomic block) it is part of it.
  A statement that must change or lock a given number of rows (the lease fence)
  is wrapped so that it raises when it does not, and nothing of the transaction
  is kept: see the agentops_expect() function (migration agentops 0011).
- SQLite: the statements one by one inside atomic(), each checked as it runs.

Reads are never deferred: a read inside the block runs at once, before the
block's writes are sent (none of the hot path reads what it is writing).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from django.db import DatabaseError, connection, transaction

# The SQLSTATE agentops_expect() raises (class "AO": ours, unused by PostgreSQL).
EXPECTATION_FAILED = "AO001"
# The first line of a batch: say what it is in the server's logs and statistics,
# and let a reader of captured queries count its statements (see statements_in).
_MARKER = "/* write transaction: {} statements */ "
_MARKER_RE = re.compile(r"^/\* write transaction: (\d+) statements \*/")


@dataclass
class Statement:
    sql: str
    params: list
    # Rows the statement must change (or, for a SELECT, return); else `fail()` is raised.
    expect: int | None = None
    fail: Callable[[], Exception] | None = None
    # Given the rows of a statement with RETURNING (or a SELECT), once it has run.
    returned: Callable[[list[tuple]], None] | None = None
    is_select: bool = False


@dataclass
class _Batch:
    statements: list[Statement] = field(default_factory=list)


_savepoints = itertools.count(1)
_open: ContextVar[_Batch | None] = ContextVar("write_transaction", default=None)


@contextmanager
def write_transaction() -> Iterator[None]:
    """Collect the hot path's writes in the block and send them as one transaction.

    Nested blocks join the outermost one. Nothing is sent if the block raises.
    Errors of the writes (an IntegrityError, a failed expectation) are raised when
    the outermost block ends, and then nothing of the block is written.
    """
    if _open.get() is not None:
        yield
        return
    batch = _Batch()
    token = _open.set(batch)
    try:
        yield
    finally:
        _open.reset(token)
    _send(batch.statements)


def execute(statement: Statement) -> int | None:
    """Run a statement now, or add it to the open write transaction (then None).

    Returns the rows changed (or returned) when run now.
    """
    batch = _open.get()
    if batch is not None:
        batch.statements.append(statement)
        return None
    with connection.cursor() as cursor:
        return _run(cursor, statement)


def _run(cursor, statement: Statement) -> int:
    cursor.execute(statement.sql, statement.params)
    rows = cursor.fetchall() if statement.is_select or statement.returned else None
    count = len(rows) if rows is not None else cursor.rowcount
    if statement.expect is not None and count != statement.expect:
        raise statement.fail()
    if statement.returned is not None:
        statement.returned(rows)
    return count


def _send(statements: list[Statement]) -> None:
    if not statements:
        return
    if len(statements) == 1:
        # A transaction of its own, or a statement of the open one (nothing to undo if
        # its row count is not the expected one: it changed nothing then).
        with connection.cursor() as cursor:
            _run(cursor, statements[0])
        return
    if connection.vendor != "postgresql":
        # SQLite runs one statement per call. Inside an atomic block, a savepoint: a
        # failed write leaves the outer transaction usable.
        with transaction.atomic(), connection.cursor() as cursor:
            for statement in statements:
                _run(cursor, statement)
        return
    params: list = []
    parts = [_checked(statement, index, params) for index, statement in enumerate(statements)]
    savepoint = None
    if connection.in_atomic_block:
        # Part of the open transaction, in a savepoint of its own sent with the writes.
        savepoint = f"agentops_batch_{next(_savepoints)}"
        parts = [f"SAVEPOINT {savepoint}", *parts, f"RELEASE SAVEPOINT {savepoint}"]
    sql = _MARKER.format(len(statements)) + ";\n".join(parts)
    with connection.cursor() as cursor:
        try:
            cursor.execute(sql, params)
        except DatabaseError as exc:
            if savepoint is not None:
                cursor.execute(f"ROLLBACK TO SAVEPOINT {savepoint}; RELEASE SAVEPOINT {savepoint}")
            failed = _failed_statement(exc)
            if failed is None:
                raise
            raise statements[failed].fail() from None
        if savepoint is not None:
            cursor.nextset()
        for statement in statements:
            if statement.returned is not None:
                statement.returned(cursor.fetchall())
            cursor.nextset()


def _checked(statement: Statement, index: int, params: list) -> str:
    """The statement's SQL, raising inside the server if its row count is not expected."""
    if statement.expect is None:
        params.extend(statement.params)
        return statement.sql
    if statement.returned is not None:
        raise ValueError("a statement with an expected row count returns no rows")
    tag = f"statement {index}"
    if statement.is_select:
        params.extend([statement.expect, tag, *statement.params])  # in the order of the text
        return f"SELECT agentops_expect(count(*), %s, %s) FROM ({statement.sql}) AS expected"  # noqa: S608
    params.extend([*statement.params, statement.expect, tag])
    return (
        f"WITH changed AS ({statement.sql} RETURNING 1) "  # noqa: S608
        "SELECT agentops_expect(count(*), %s, %s) FROM changed"
    )


def _failed_statement(exc: DatabaseError) -> int | None:
    cause = exc.__cause__
    if getattr(cause, "sqlstate", None) != EXPECTATION_FAILED:
        return None
    message = cause.diag.message_primary or ""
    return int(message.rsplit(" ", 1)[-1])


def statements_in(sql: str) -> int:
    """How many statements one executed query holds (a write transaction's, or 1)."""
    marker = _MARKER_RE.match(sql)
    return int(marker.group(1)) if marker else 1


def is_write_transaction(sql: str) -> bool:
    return _MARKER_RE.match(sql) is not None
