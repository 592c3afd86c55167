"""The hot path's statements sent through libpq's pipeline mode, below psycopg's cursors.

psycopg's cursors in a pipeline do per statement what the hot path needs once: a
cursor's execute queues the statement with its own bookkeeping, and the pipeline's
sync runs each result through the cursor's result machinery (description, row
maker, prepared-statement manager). For a 3-statement write transaction that is
~120 us of client CPU a transaction, against ~48 us for the same messages sent here
(timeit in one process, the same transformer reused), and a ticket sends 14 of them.

What is kept from psycopg: its libpq binding (`pgconn`), its adapters (one
Transformer per connection: the same dumpers and loaders as its cursors, so a value
goes in and comes back as through a RawCursor), its waiting (`Connection.wait`) and
its errors (`error_from_result`: the same exception classes, which Django wraps).

Each statement is prepared on a connection from its PREPARE_THRESHOLD-th run there
(the connection's `prepare_threshold`, None: never), keyed by its text and its
parameters' types, as psycopg's cursors do. A statement is taken to be prepared
only once the server has said so: a pipeline that fails skips what follows the
failed statement, preparations included.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import psycopg
from psycopg import errors, generators
from psycopg.adapt import PyFormat, Transformer
from psycopg.pq import ExecStatus, TransactionStatus

# Bounds for a connection's bookkeeping: the hot statements are a few dozen texts.
_MAX_PREPARED = 200
_MAX_COUNTED = 2000

_RESULTS_WITH_ROWS = (ExecStatus.TUPLES_OK, ExecStatus.SINGLE_TUPLE)


@dataclass
class _Connection:
    """What this module keeps of one psycopg connection."""

    pg: psycopg.Connection
    tx: Transformer
    # Runs of each statement not prepared yet, and the prepared ones' names.
    runs: dict[tuple, int] = field(default_factory=dict)
    names: dict[tuple, bytes] = field(default_factory=dict)
    serial: int = 0


_kept = threading.local()


def _state(pg: psycopg.Connection) -> _Connection:
    """This thread's bookkeeping for `pg`, new for a new connection (Django reconnected)."""
    state = getattr(_kept, "state", None)
    if state is None or state.pg is not pg:
        state = _kept.state = _Connection(pg, Transformer(pg))
    return state


@dataclass
class Sent:
    """One statement: its text with $n placeholders, its parameters, and whether it
    may be prepared (a savepoint's name changes every time: never)."""

    sql: str
    params: Sequence
    prepare: bool = True


def run(pg: psycopg.Connection, statements: Sequence[Sent]) -> list[list[tuple] | None]:
    """Send the statements in one pipeline with one Sync (one implicit transaction, or
    part of the open one) and return each one's rows (None for no result rows).

    The first failed statement's error is raised (a psycopg error, as its cursors
    raise) once every result has been read; nothing after it ran. A statement that
    the server no longer knows as prepared is forgotten and the pipeline, which then
    changed nothing, sent once more unprepared (outside an open transaction).
    Interrupted half way (a time limit, the server gone), the connection is closed:
    its state is not known.
    """
    state = _state(pg)
    with pg.lock:
        try:
            return _run(state, statements, prepare=True)
        except errors.InvalidSqlStatementName:
            state.names.clear()
            state.runs.clear()
            if pg.pgconn.transaction_status != TransactionStatus.IDLE:
                raise  # part of an open transaction, which the error ended
            return _run(state, statements, prepare=False)


@dataclass
class _Dumped:
    sql: bytes
    params: Sequence
    types: tuple
    formats: list
    prepare: bool


def _run(
    state: _Connection, statements: Sequence[Sent], *, prepare: bool
) -> list[list[tuple] | None]:
    pg, tx = state.pg, state.tx
    # Every parameter dumped before anything is sent: a value that cannot be adapted
    # raises with the connection untouched.
    dumped = []
    for statement in statements:
        params = tx.dump_sequence(statement.params, [PyFormat.AUTO] * len(statement.params))
        dumped.append(
            _Dumped(statement.sql.encode(), params, tx.types, tx.formats, statement.prepare)
        )
    threshold = pg.prepare_threshold if prepare else None
    pgconn = pg.pgconn
    try:
        pgconn.enter_pipeline_mode()
        expected = _queue(state, dumped, threshold)
        pgconn.pipeline_sync()
        pg.wait(generators.send(pgconn))
        rows, failure = _read(state, expected, len(dumped))
        pgconn.exit_pipeline_mode()
    except BaseException:
        pg.close()
        raise
    if failure is not None:
        raise failure
    return rows


def _queue(state: _Connection, dumped: list[_Dumped], threshold: int | None) -> list[tuple]:
    """Queue each statement, prepared when due; returns what each result will answer:
    ("prepare", key, name) or ("run", index)."""
    pgconn = state.pg.pgconn
    expected: list[tuple] = []
    preparing: dict[tuple, bytes] = {}  # in this pipeline, not yet confirmed
    for index, one in enumerate(dumped):
        key = (one.sql, one.types)
        name = state.names.get(key) or preparing.get(key)
        if name is None and one.prepare and _due(state, key, threshold):
            state.serial += 1
            name = preparing[key] = f"_ao_{state.serial}".encode()
            pgconn.send_prepare(name, one.sql, param_types=one.types)
            expected.append(("prepare", key, name))
        if name is None:
            pgconn.send_query_params(
                one.sql, one.params, param_types=one.types, param_formats=one.formats
            )
        else:
            pgconn.send_query_prepared(name, one.params, param_formats=one.formats)
        expected.append(("run", index))
    return expected


def _due(state: _Connection, key: tuple, threshold: int | None) -> bool:
    """Whether the statement is to be prepared now: it has run `threshold` times."""
    if threshold is None or len(state.names) >= _MAX_PREPARED:
        return False
    seen = state.runs.get(key, 0)
    if seen >= threshold:
        return True
    if len(state.runs) >= _MAX_COUNTED:
        state.runs.clear()
    state.runs[key] = seen + 1
    return False


def _read(
    state: _Connection, expected: list[tuple], count: int
) -> tuple[list[list[tuple] | None], Exception | None]:
    """Every result up to the Sync: each statement's rows, and the first error."""
    pg, tx = state.pg, state.tx
    rows: list[list[tuple] | None] = [None] * count
    failure: Exception | None = None
    for what in expected:
        for result in pg.wait(generators.fetch_many(pg.pgconn)):
            status = result.status
            if status == ExecStatus.FATAL_ERROR:
                if failure is None:
                    failure = errors.error_from_result(result, encoding=pg.info.encoding)
            elif status == ExecStatus.PIPELINE_ABORTED:
                pass  # skipped: a statement before it failed
            elif what[0] == "prepare":
                state.names[what[1]] = what[2]
                state.runs.pop(what[1], None)
            elif status in _RESULTS_WITH_ROWS:
                tx.set_pgresult(result)
                rows[what[1]] = tx.load_rows(0, result.ntuples, tuple)
    sync = pg.wait(generators.fetch_many(pg.pgconn))
    if len(sync) != 1 or sync[0].status != ExecStatus.PIPELINE_SYNC:
        raise errors.InternalError(f"expected the pipeline's sync, got {sync!r}")
    return rows, failure
