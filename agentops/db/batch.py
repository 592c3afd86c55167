"""One write transaction, one round trip.

A step of a run writes a few rows: the run's new state, its spans, a ledger row.
Sent one by one inside transaction.atomic(), each is a round trip of its own, and
so are BEGIN and COMMIT: on PostgreSQL a 3-statement transaction costs 5 round
trips, and about as much CPU in Django, psycopg and the server's per-message work
as in the statements themselves. Inside write_transaction() the hot path's writes
(agentops.db.hot) are collected and sent together when the block ends:

- PostgreSQL: the statements in one pipeline (libpq's pipeline mode: extended
  protocol, one Sync at the end), which the server runs as one transaction, all
  or nothing; inside an open transaction (an atomic block) it is part of it. The
  parameters are bound server-side, and each statement is prepared once it has run
  a few times on the connection (PREPARE_THRESHOLD in settings): it is parsed and
  planned no more, where Django's cursors bind client-side and prepare nothing.
  They go out through agentops.db.libpq, below psycopg's cursors (less client CPU).
  A statement that must change or lock a given number of rows (the lease fence)
  is wrapped so that it raises when it does not, and nothing of the transaction
  is kept: see the agentops_expect() function (migration agentops 0011).
- SQLite: the statements one by one inside atomic(), each checked as it runs.

Reads are never deferred: a read inside the block runs at once, before the
block's writes are sent (none of the hot path reads what it is writing).
"""

from __future__ import annotations

import functools
import itertools
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import psycopg
from django.db import DatabaseError, connection, transaction
from psycopg.pq import TransactionStatus

from agentops.db import libpq

# The SQLSTATE agentops_expect() raises (class "AO": ours, unused by PostgreSQL).
EXPECTATION_FAILED = "AO001"
# The first line of a batch in Django's log of queries: a reader of captured queries
# counts its statements from it (see statements_in).
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
    # False: the commit does not wait for its WAL flush (see write_transaction).
    durable: bool = True


# A write transaction that need not be durable when it commits: PostgreSQL's
# synchronous_commit for this transaction only (set_config's third argument).
_COMMIT_WITHOUT_FLUSH = Statement(
    "SELECT set_config('synchronous_commit', 'off', true)", [], is_select=True
)


_savepoints = itertools.count(1)
_open: ContextVar[_Batch | None] = ContextVar("write_transaction", default=None)


@contextmanager
def write_transaction(*, durable: bool = True) -> Iterator[None]:
    """Collect the hot path's writes in the block and send them as one transaction.

    Nested blocks join the outermost one. Nothing is sent if the block raises.
    Errors of the writes (an IntegrityError, a failed expectation) are raised when
    the outermost block ends, and then nothing of the block is written.

    `durable=False`: on PostgreSQL, outside an atomic block, the commit returns
    before its WAL is flushed (synchronous_commit off for this transaction). A
    crash of the server may then lose it, and only with every later commit: the
    WAL is replayed in order, so what survives is the state at some earlier
    moment, and the next durable commit flushes everything before it. One nested
    block that asks for a durable commit makes the whole transaction durable.
    """
    batch = _open.get()
    if batch is not None:
        batch.durable = batch.durable or durable
        yield
        return
    batch = _Batch(durable=durable)
    token = _open.set(batch)
    try:
        yield
    finally:
        _open.reset(token)
    if batch.statements and not batch.durable and _can_skip_flush():
        batch.statements.insert(0, _COMMIT_WITHOUT_FLUSH)
    _send(batch.statements)


def _can_skip_flush() -> bool:
    """PostgreSQL, and a transaction of its own (not part of an atomic block's)."""
    return connection.vendor == "postgresql" and not connection.in_atomic_block


def query(sql: str, params: list, *, durable: bool = True) -> list[tuple]:
    """Run one statement at once, outside any write transaction's batch, and return its
    rows (none for a statement that returns none). `durable`: as write_transaction's,
    for a statement that writes.

    For the hot path's reads (and its writes that return rows or stand alone). On
    PostgreSQL with server-side binding, and so prepared once it has run a few times
    on the connection (PREPARE_THRESHOLD), as the write transactions' statements are:
    Django's cursors bind client-side, and a query sent through them is parsed and
    planned at every run (an order snapshot: ~165 us of backend CPU, ~45 us
    prepared; timeit in one process). Elsewhere through Django's cursor.
    """
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description is not None else []
    _connected()
    pg = connection.connection
    rows: list[tuple] = []
    sent = [libpq.Sent(_numbered(sql), params)]
    text = sql
    if not durable and _can_skip_flush():
        sent.insert(0, libpq.Sent(_COMMIT_WITHOUT_FLUSH.sql, []))
        text = _logged([_COMMIT_WITHOUT_FLUSH.sql, sql])

    def send(*_) -> list[list[tuple] | None]:
        returned = _on(pg, sent)
        rows.extend(returned[-1] or [])
        return returned

    with connection.wrap_database_errors:
        _as_one_query(lambda: text, send, sent)
    return rows


def send_as_recorded(sent: list[libpq.Sent]) -> list[list[tuple] | None]:
    """Send statements exactly as one of the hot path's round trips sent them (as an
    execute wrapper sees them: see _as_one_query) and return each one's rows; for the
    benchmark's replay of a ticket's SQL (agentops.bench.replayed)."""
    _connected()
    with connection.wrap_database_errors:
        return _on(connection.connection, sent)


def send_now(statements: list[Statement]) -> None:
    """Send these statements as one write transaction at once, whatever block is open.

    For a party with transactions of its own (the simulated provider), which must
    not join the caller's batch; inside an atomic block they are part of it.
    """
    _send(statements)


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
    if connection.vendor == "postgresql":
        _send_pipelined(statements)
        return
    if len(statements) == 1:
        # A transaction of its own, or a statement of the open one (nothing to undo if
        # its row count is not the expected one: it changed nothing then).
        with connection.cursor() as cursor:
            _run(cursor, statements[0])
        return
    # SQLite runs one statement per call. Inside an atomic block, a savepoint: a failed
    # write leaves the outer transaction usable.
    with transaction.atomic(), connection.cursor() as cursor:
        for statement in statements:
            _run(cursor, statement)


def _send_pipelined(statements: list[Statement]) -> None:
    """Every statement in one pipeline, with their rows read once it has been synced."""
    _connected()
    pg = connection.connection
    sent = []
    for index, statement in enumerate(statements):
        sql, params = _checked(statement, index)
        sent.append(libpq.Sent(_numbered(sql), params))
    savepoint = None
    if connection.in_atomic_block:
        # Part of the open transaction, in a savepoint of its own sent with the writes.
        savepoint = f"agentops_batch_{next(_savepoints)}"
        sent = [
            libpq.Sent(f"SAVEPOINT {savepoint}", [], prepare=False),
            *sent,
            libpq.Sent(f"RELEASE SAVEPOINT {savepoint}", [], prepare=False),
        ]
    rows: list[list[tuple] | None] = []

    def send(*_) -> list[list[tuple] | None]:
        rows.extend(_on(pg, sent))
        return rows

    try:
        with connection.wrap_database_errors:
            _as_one_query(lambda: _logged([s.sql for s in statements]), send, sent)
    except DatabaseError as exc:
        if savepoint is not None and pg.info.transaction_status == TransactionStatus.INERROR:
            with connection.wrap_database_errors:
                pg.execute(f"ROLLBACK TO SAVEPOINT {savepoint}; RELEASE SAVEPOINT {savepoint}")
        failed = _failed_statement(exc)
        if failed is None:
            raise
        raise statements[failed].fail() from None
    if savepoint is not None:
        rows = rows[1:-1]
    for statement, returned in zip(statements, rows, strict=True):
        if statement.returned is not None:
            statement.returned(returned or [])


def _logged(sqls: list[str]) -> str:
    """How Django's log of queries shows a write transaction sent as one query: its
    statements after a marker saying how many (see statements_in)."""
    return _MARKER.format(len(sqls)) + ";\n".join(sqls)


def _on(pg: psycopg.Connection, sent: list[libpq.Sent]) -> list[list[tuple] | None]:
    """libpq.run, and Django told when it closed the connection (interrupted half way):
    the next query connects again, and an open atomic block fails."""
    try:
        return libpq.run(pg, sent)
    except BaseException:
        if pg.closed:
            connection.close()
        raise


def _connected() -> None:
    """What Django's cursor() does before a query: the connection's health check once
    per task or request (CONN_HEALTH_CHECKS: a worker survives a database restart),
    connecting if need be, and no query in a transaction that must roll back."""
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_no_broken_transaction()


def _as_one_query(
    text: Callable[[], str], send: Callable[..., list], sent: list[libpq.Sent]
) -> None:
    """Run `send` as Django runs a query: inside the connection's execute wrappers, and
    logged when queries are (DEBUG, CaptureQueriesContext) as `text()` (parameters
    left out: a write transaction's statements after a marker saying how many).

    A wrapper gets no cursor in its context but the statements as they are sent
    (`context["statements"]`: libpq.Sent, parameters included), and the rows of each
    from its `execute` (None for a statement without result rows)."""
    wrappers, logged = connection.execute_wrappers, connection.queries_logged
    if not wrappers and not logged:
        send()
        return
    sql = text()
    executor = send
    for wrapper in reversed(wrappers):
        executor = functools.partial(wrapper, executor)
    started = time.monotonic()
    context = {"connection": connection, "cursor": None, "statements": sent}
    try:
        executor(sql, None, False, context)
    finally:
        if logged:
            connection.queries_log.append({"sql": sql, "time": f"{time.monotonic() - started:.3f}"})


def _checked(statement: Statement, index: int) -> tuple[str, list]:
    """The statement's SQL and parameters, raising inside the server if its row count
    is not expected."""
    if statement.expect is None:
        return statement.sql, statement.params
    if statement.returned is not None:
        raise ValueError("a statement with an expected row count returns no rows")
    tag = f"statement {index}"
    if statement.is_select:
        return (
            f"SELECT agentops_expect(count(*), %s, %s) FROM ({statement.sql}) AS expected",  # noqa: S608
            [statement.expect, tag, *statement.params],  # in the order of the text
        )
    return (
        f"WITH changed AS ({statement.sql} RETURNING 1) "  # noqa: S608
        "SELECT agentops_expect(count(*), %s, %s) FROM changed",
        [*statement.params, statement.expect, tag],
    )


_PLACEHOLDER = re.compile(r"%(.)", re.DOTALL)


@functools.lru_cache(maxsize=1024)
def _numbered(sql: str) -> str:
    """The statement with PostgreSQL's own placeholders ($1, $2, ...), as libpq sends
    it, converted once per statement text.

    psycopg's Cursor parses each query for its %s placeholders, and keeps the parse
    only for statements of at most 50 parameters (MAX_CACHED_STATEMENT_PARAMS): a
    multi-row span INSERT (24 columns a row, 3 a ticket) was parsed anew every time,
    ~0.37 ms of CPU for 5 rows. The hot statements are built once per shape, so
    their texts are few.
    """
    numbers = itertools.count(1)

    def placeholder(match: re.Match) -> str:
        if match.group(1) == "%":
            return "%"
        if match.group(1) == "s":
            return f"${next(numbers)}"
        raise ValueError(f"only %s and %% are placeholders in a hot statement: {sql[:200]}")

    return _PLACEHOLDER.sub(placeholder, sql)


def _failed_statement(exc: DatabaseError) -> int | None:
    """The index of the statement whose expectation failed, if that was the error."""
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
