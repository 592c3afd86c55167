"""Inserts and updates for the agent loop's hot path, without the ORM's query compiler.

Every step of a run writes its span and advances the run. Django compiles each
QuerySet.update() and bulk_create() anew: about 0.2 ms of CPU per statement, as
much as PostgreSQL spends running it. These write the same columns, with values
encoded by the same model fields (JSON, decimals, datetimes), from SQL built once
per process for each shape of statement. Nothing here is vendor-specific: the SQL
is the subset PostgreSQL and SQLite (3.35+, for RETURNING) share.

Only plain values: no F() or other expressions (use the ORM for those), and no
signals (the ORM's update() and bulk_create() send none either).

Inside agentops.db.batch.write_transaction() the writes are collected and sent
together at the end of the block; outside it each runs at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from functools import cache

from django.db import connection, models

from agentops.db.batch import Statement, execute


def _quote(name: str) -> str:
    return connection.ops.quote_name(name)


@cache
def _insert_fields(model: type[models.Model]) -> tuple[models.Field, ...]:
    return tuple(f for f in model._meta.concrete_fields if not f.primary_key)


@cache
def _insert_sql(model: type[models.Model], rows: int) -> str:
    fields = _insert_fields(model)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    table, pk = _quote(model._meta.db_table), _quote(model._meta.pk.column)
    columns = ", ".join(_quote(f.column) for f in fields)
    # Identifiers come from model metadata; every value is a parameter.
    return f"INSERT INTO {table} ({columns}) VALUES {', '.join([row] * rows)} RETURNING {pk}"  # noqa: S608


def insert_many(objs: list[models.Model]) -> None:
    """INSERT new instances of one model in one statement; sets their primary keys."""
    if not objs:
        return
    model = type(objs[0])
    fields = _insert_fields(model)
    params = []
    for obj in objs:
        params.extend(f.get_db_prep_save(f.pre_save(obj, add=True), connection) for f in fields)

    def returned(rows: list[tuple]) -> None:
        # RETURNING gives the rows in VALUES order on both databases for a plain INSERT.
        for obj, (pk,) in zip(objs, rows, strict=True):
            obj.pk = pk
            obj._state.adding = False
            obj._state.db = connection.alias

    execute(Statement(_insert_sql(model, len(objs)), params, returned=returned))


def _shape(where: Mapping[str, object]) -> tuple[tuple[str, int], ...]:
    """Each condition's column and kind: -1 IS NULL, 0 equality, n > 0 IN n values."""
    return tuple(
        (name, -1 if value is None else len(value) if isinstance(value, tuple) else 0)
        for name, value in where.items()
    )


def _conditions(meta, shape: tuple[tuple[str, int], ...]) -> str:
    def condition(name: str, kind: int) -> str:
        column = _quote(meta.get_field(name).column)
        if kind < 0:
            return f"{column} IS NULL"
        return f"{column} IN ({', '.join(['%s'] * kind)})" if kind else f"{column} = %s"

    return " AND ".join(condition(name, kind) for name, kind in shape)


def _compared(model: type[models.Model], where: Mapping[str, object]) -> list:
    """The parameters of the conditions, in order (none for IS NULL, one per IN value)."""
    params = []
    for name, value in where.items():
        field = model._meta.get_field(name)
        for one in value if isinstance(value, tuple) else (value,):
            if one is not None:
                params.append(field.get_db_prep_save(one, connection))
    return params


@cache
def _update_sql(
    model: type[models.Model], names: tuple[str, ...], where: tuple[tuple[str, int], ...]
) -> str:
    meta = model._meta
    sets = ", ".join(f"{_quote(meta.get_field(n).column)} = %s" for n in names)
    return f"UPDATE {_quote(meta.db_table)} SET {sets} WHERE {_conditions(meta, where)}"  # noqa: S608


def _prepared(model: type[models.Model], values: Mapping[str, object]) -> Iterable:
    for name, value in values.items():
        field = model._meta.get_field(name)
        if hasattr(value, "prepare_database_save"):
            value = value.prepare_database_save(field)  # a model instance for a foreign key
        yield field.get_db_prep_save(value, connection)


def update_where(
    model: type[models.Model],
    values: Mapping[str, object],
    where: Mapping[str, object],
    *,
    or_raise: Callable[[], Exception] | None = None,
) -> int | None:
    """UPDATE the rows matching every `where` condition with `values`; returns the row count
    (None inside a write transaction, where it is not known yet).

    What QuerySet.filter(**where).update(**values) does, for plain values only: each
    condition is an equality, IS NULL for None, or IN for a tuple of values. With
    `or_raise`, exactly one row must match, else `or_raise()` is raised and nothing
    of the write transaction is kept.
    """
    return execute(
        Statement(
            _update_sql(model, tuple(values), _shape(where)),
            [*_prepared(model, values), *_compared(model, where)],
            expect=1 if or_raise else None,
            fail=or_raise,
        )
    )


def save_fields(obj: models.Model) -> None:
    """UPDATE every column of a saved instance: what obj.save() does for an existing row."""
    model = type(obj)
    fields = _insert_fields(model)
    pk = model._meta.pk
    execute(
        Statement(
            _update_sql(model, tuple(f.name for f in fields), ((pk.name, 0),)),
            [
                *(f.get_db_prep_save(f.pre_save(obj, add=False), connection) for f in fields),
                pk.get_db_prep_save(obj.pk, connection),
            ],
        )
    )


@cache
def _select_sql(
    model: type[models.Model], column: str, where: tuple[tuple[str, int], ...], lock: bool
) -> str:
    meta = model._meta
    sql = f"SELECT {_quote(column)} FROM {_quote(meta.db_table)} WHERE {_conditions(meta, where)}"  # noqa: S608
    return sql + " FOR UPDATE" if lock else sql


def value_where(model: type[models.Model], name: str, where: Mapping[str, object]):
    """One column of the row matching every `where` condition (None if there is none).

    For a lookup by a unique key: what .filter(**where).values_list(name, flat=True)
    .first() returns, read back through the field (a decimal comes back a Decimal).
    """
    sql = _select_sql(model, model._meta.get_field(name).column, _shape(where), lock=False)
    with connection.cursor() as cursor:
        cursor.execute(sql, _compared(model, where))
        row = cursor.fetchone()
    if row is None:
        return None
    column = model._meta.get_field(name).get_col(model._meta.db_table)
    value = row[0]
    # The converters the ORM applies to this column, in its order: the backend's first.
    for converter in connection.ops.get_db_converters(column) + column.get_db_converters(
        connection
    ):
        value = converter(value, column, connection)
    return value


def lock_one(
    model: type[models.Model], where: Mapping[str, object], *, or_raise: Callable[[], Exception]
) -> None:
    """Lock the one row matching every `where` condition until the transaction ends,
    else raise `or_raise()` (and keep nothing of the write transaction).

    SELECT ... FOR UPDATE where the database has it. SQLite has no row locks: there a
    writing transaction holds the whole database from its start (IMMEDIATE), which
    is stronger.
    """
    lock = connection.features.has_select_for_update
    sql = _select_sql(model, model._meta.pk.column, _shape(where), lock=lock)
    execute(Statement(sql, _compared(model, where), expect=1, fail=or_raise, is_select=True))


def execute_sql(sql: str, params: list) -> None:
    """A statement of our own (an upsert, say), in the write transaction if one is open."""
    execute(Statement(sql, params))
