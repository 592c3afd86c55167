"""Where a benchmark round's CPU and WAL go: per-process CPU clocks, WAL per table.

The throughput ratio follows the CPU a ticket costs on the machine's cores, and the
WAL follows the rows a ticket writes; the totals alone do not say which part to
work on. Both breakdowns are read around one round, on the same machine:

- CPU: the clocks (user + system) of the worker's pool processes, of its Celery
  parent, and of the PostgreSQL server, from /proc. The server's figure is all of
  its processes (backends, checkpointer, WAL writer, autovacuum where it runs),
  those that exited during the round included (their time is added to the
  postmaster's once it has reaped them: a worker's connection is replaced after
  CONN_MAX_AGE). Only when PostgreSQL runs on this host; otherwise there is no
  server figure.
- WAL: the records between the round's two WAL positions, by the table they
  change (its indexes and TOAST counted with it), from pg_walinspect
  (PostgreSQL 15+, a superuser to create the extension). Only this database's
  records are attributed to tables; records that change no table (commits) are
  server-wide, like the WAL total the benchmark prints.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from django.db import DatabaseError, connection, transaction

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# The process groups a ticket's CPU is split into, in print order.
POOL, PARENT, SERVER, OURS = (
    "worker pool processes",
    "Celery parent process",
    "PostgreSQL, all its processes",
    "  of which the benchmark's backend",
)
CPU_GROUPS = (POOL, PARENT, SERVER, OURS)
NO_TABLE = "(no table: commits, other databases)"
GONE = "(relations dropped or rewritten since)"


def _stat(pid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The fields after the command, which may hold spaces and ends with ")".
    return stat.rsplit(")", 1)[1].split()


def _cpu_seconds(pid: int, *, reaped_children: bool = False) -> float | None:
    fields = _stat(pid)
    if fields is None:
        return None
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if reaped_children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / CLOCK_TICKS


def children_of(pid: int) -> list[int]:
    """The pids of a process's children (none once it has exited)."""
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _server_seconds() -> tuple[dict[int, float], dict[int, float]]:
    """CPU seconds of the PostgreSQL server's processes (the postmaster's entry counts
    the children it reaped), and of our own backend; both empty when the server's
    processes are not on this host."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (ours,) = cursor.fetchone()
    try:
        if not Path(f"/proc/{ours}/cmdline").read_bytes().startswith(b"postgres"):
            return {}, {}
    except OSError:
        return {}, {}
    postmaster = int(_stat(ours)[1])  # a backend's parent
    seconds = {postmaster: _cpu_seconds(postmaster, reaped_children=True) or 0.0}
    for pid in children_of(postmaster):
        if (spent := _cpu_seconds(pid)) is not None:
            seconds[pid] = spent
    return seconds, {ours: seconds.get(ours, 0.0)}


@dataclass
class Clocks:
    """CPU seconds so far of each process, by group (see CPU_GROUPS)."""

    seconds: dict[str, dict[int, float]]
    server_seen: bool

    @classmethod
    def read(cls, *, parent: int, pool: list[int]) -> Clocks:
        server, ours = _server_seconds()
        seconds = {
            POOL: {pid: s for pid in pool if (s := _cpu_seconds(pid)) is not None},
            PARENT: {parent: _cpu_seconds(parent) or 0.0},
            SERVER: server,
            OURS: ours,
        }
        return cls(seconds, server_seen=bool(server))

    def minus(self, before: Clocks) -> dict[str, float | None]:
        """CPU seconds each group spent since `before`; None for what was not visible.

        A process that started in between (a new connection) counts from zero.
        """
        spent: dict[str, float | None] = {}
        for group in CPU_GROUPS:
            if group in (SERVER, OURS) and not self.server_seen:
                spent[group] = None
                continue
            was = before.seconds.get(group, {})
            spent[group] = sum(s - was.get(pid, 0.0) for pid, s in self.seconds[group].items())
        return spent


def walinspect_enable() -> str | None:
    """Create pg_walinspect if it is missing. Returns why it cannot be used, or None."""
    if connection.vendor != "postgresql" or connection.pg_version < 150000:
        return "pg_walinspect needs PostgreSQL 15+"
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
    except DatabaseError as exc:
        return f"pg_walinspect: {str(exc).strip().splitlines()[0]}"
    return None


# Each record's bytes by the first relation it changes (record_length includes the
# record's full-page images, fpi_length says how much of it they are). Without the
# images: a record that carries one leaves out the data the image already holds (a
# heap insert's row), so its length less the image undercounts what the change logs;
# each kind of record is counted at the mean length of those of its kind without one.
_WAL_BY_RELATION = r"""
WITH records AS (
    SELECT resource_manager, record_type, record_length AS bytes, fpi_length,
           regexp_match(block_ref, 'rel \d+/(\d+)/(\d+)') AS ref
    FROM pg_get_wal_records_info(%s::pg_lsn, %s::pg_lsn)
), kinds AS (
    SELECT CASE WHEN ref[1]::oid = (SELECT oid FROM pg_database
                                    WHERE datname = current_database())
                THEN ref[2]::oid END AS node,
           count(*) AS n, sum(bytes) AS bytes, sum(fpi_length) AS fpi,
           coalesce(avg(bytes) FILTER (WHERE fpi_length = 0), avg(bytes - fpi_length)) AS plain
    FROM records
    GROUP BY 1, resource_manager, record_type
)
SELECT node, sum(bytes)::bigint, sum(fpi)::bigint, round(sum(n * plain))::bigint
FROM kinds
GROUP BY 1
"""

# A relation (by file node) with the table it belongs to: an index's table, a TOAST
# table's owner, an index of a TOAST table its owner.
_OWNERS = """
SELECT pg_relation_filenode(c.oid), owner.relname, c.relkind = 'i'
FROM pg_class c
LEFT JOIN pg_index i ON i.indexrelid = c.oid
LEFT JOIN pg_class toasted ON toasted.reltoastrelid = coalesce(i.indrelid, c.oid)
JOIN pg_class owner ON owner.oid = coalesce(toasted.oid, i.indrelid, c.oid)
WHERE pg_relation_filenode(c.oid) = ANY(%s)
"""


@dataclass
class TableWal:
    table: str
    heap: int  # the table's own pages and its TOAST
    indexes: int
    # Of heap + indexes: whole pages logged at their first change after a checkpoint.
    full_pages: int = 0
    # heap + indexes as they would be without any (see _WAL_BY_RELATION).
    without_full_pages: int = 0

    @property
    def total(self) -> int:
        return self.heap + self.indexes


def _flushed_to(cursor, lsn: str, *, timeout: float = 10.0) -> None:
    """Wait until the WAL up to `lsn` is flushed: pg_walinspect reads only that ("cannot
    accept future end LSN"). The round's last commits flushed nothing (a run's progress
    commits without a flush) and a commit that wrote nothing else does not flush either;
    the WAL writer flushes them within its delay (wal_writer_delay, 200 ms by default)."""
    deadline = time.monotonic() + timeout
    while True:
        cursor.execute("SELECT pg_current_wal_flush_lsn() >= %s::pg_lsn", [lsn])
        if cursor.fetchone()[0] or time.monotonic() > deadline:
            return  # past the deadline, pg_walinspect's own error says what is missing
        time.sleep(0.05)


def wal_by_table(start: str, end: str) -> list[TableWal]:
    """WAL bytes between two positions by table, largest first (see the module doc).

    Raises DatabaseError when the WAL is no longer there (recycled after checkpoints).
    """
    with connection.cursor() as cursor:
        _flushed_to(cursor, end)
        cursor.execute(_WAL_BY_RELATION, [start, end])
        by_node = {node: (size, full, plain) for node, size, full, plain in cursor.fetchall()}
        nodes = [node for node in by_node if node is not None]
        cursor.execute(_OWNERS, [nodes])
        owners = {node: (table, is_index) for node, table, is_index in cursor.fetchall()}
    tables: dict[str, TableWal] = {}
    for node, (size, full, plain) in by_node.items():
        table, is_index = owners.get(node, (GONE, False)) if node else (NO_TABLE, False)
        entry = tables.setdefault(table, TableWal(table, 0, 0))
        entry.full_pages += full
        entry.without_full_pages += plain
        if is_index:
            entry.indexes += size
        else:
            entry.heap += size
    return sorted(tables.values(), key=lambda t: t.total, reverse=True)
