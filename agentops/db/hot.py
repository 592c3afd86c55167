"""Inserts and updates for the agent loop's hot path, without the ORM's query compiler.

Every step of a run writes its span and advances the run. Django compiles each
QuerySet.update() and bulk_create() anew: about 0.2 ms of CPU per statement, as
much as PostgreSQL spends running it. These write the same columns, with values
encoded as the same model fields encode them (JSON, decimals, datetimes; see
agentops.db.encoders), from SQL built once per process for each shape of statement.
Nothing here is vendor-specific: the SQL is the subset PostgreSQL and SQLite (3.35+,
for RETURNING) share.

Only plain values: no F() or other expressions (use the ORM for those), and no
signals (the ORM's update() and bulk_create() send none either).

Inside agentops.db.batch.write_transaction() the writes are collected and sent
together at the end of the block; outside it each runs at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from functools import cache

from django.db import DEFAULT_DB_ALIAS, connection, connections, models
from django.db.models import Value
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce

from agentops.db.batch import Statement, execute, query
from agentops.db.encoders import column_encoder, value_encoder


def _quote(name: str) -> str:
    return connection.ops.quote_name(name)


def _db():
    """The connection itself, for loops over values: each attribute read through
    django.db.connection (a proxy) looks the connection up again (~0.6 us a value,
    a third of encoding a span's row)."""
    return connections[DEFAULT_DB_ALIAS]


@cache
def _insert_fields(model: type[models.Model]) -> tuple[models.Field, ...]:
    return tuple(f for f in model._meta.concrete_fields if not f.primary_key)


@cache
def _insert_encoders(model: type[models.Model]) -> tuple:
    return tuple(column_encoder(f, add=True) for f in _insert_fields(model))


def _generated_pk(model: type[models.Model]) -> bool:
    """The database makes the primary key (an id column), rather than the values given
    (a composite key of the model's own columns)."""
    return model._meta.pk.column is not None


@cache
def _insert_sql(model: type[models.Model], rows: int) -> str:
    fields = _insert_fields(model)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    table = _quote(model._meta.db_table)
    columns = ", ".join(_quote(f.column) for f in fields)
    # Identifiers come from model metadata; every value is a parameter.
    sql = f"INSERT INTO {table} ({columns}) VALUES {', '.join([row] * rows)}"  # noqa: S608
    return sql + f" RETURNING {_quote(model._meta.pk.column)}" if _generated_pk(model) else sql


def insert_many(objs: list[models.Model]) -> None:
    """INSERT new instances of one model in one statement; sets their primary keys (those
    the database makes: a composite key is the instances' own values)."""
    if not objs:
        return
    model = type(objs[0])
    encoders = _insert_encoders(model)
    db = _db()
    params = []
    for obj in objs:
        params.extend([encode(obj, db) for encode in encoders])

    def returned(rows: list[tuple]) -> None:
        # RETURNING gives the rows in VALUES order on both databases for a plain INSERT.
        for obj, (pk,) in zip(objs, rows, strict=True):
            obj.pk = pk
            obj._state.adding = False
            obj._state.db = db.alias

    sql = _insert_sql(model, len(objs))
    execute(Statement(sql, params, returned=returned if _generated_pk(model) else None))


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
    db = _db()
    params = []
    for name, value in where.items():
        encode = value_encoder(model._meta.get_field(name))
        for one in value if isinstance(value, tuple) else (value,):
            if one is not None:
                params.append(encode(one, db))
    return params


@cache
def _update_sql(
    model: type[models.Model], names: tuple[str, ...], where: tuple[tuple[str, int], ...]
) -> str:
    meta = model._meta
    sets = ", ".join(f"{_quote(meta.get_field(n).column)} = %s" for n in names)
    return f"UPDATE {_quote(meta.db_table)} SET {sets} WHERE {_conditions(meta, where)}"  # noqa: S608


def _prepared(model: type[models.Model], values: Mapping[str, object]) -> Iterable:
    db = _db()
    for name, value in values.items():
        field = model._meta.get_field(name)
        if hasattr(value, "prepare_database_save"):
            value = value.prepare_database_save(field)  # a model instance for a foreign key
        yield value_encoder(field)(value, db)


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


def save_fields(obj: models.Model, names: Iterable[str] | None = None) -> None:
    """UPDATE the named columns of a saved instance, or every column: what
    obj.save(update_fields=names) and obj.save() do for an existing row."""
    model = type(obj)
    fields = _insert_fields(model) if names is None else _named_fields(model, tuple(names))
    pk = model._meta.pk
    db = _db()
    execute(
        Statement(
            _update_sql(model, tuple(f.name for f in fields), ((pk.name, 0),)),
            [
                *(column_encoder(f, add=False)(obj, db) for f in fields),
                pk.get_db_prep_save(obj.pk, db),
            ],
        )
    )


@cache
def _named_fields(model: type[models.Model], names: tuple[str, ...]) -> tuple[models.Field, ...]:
    return tuple(model._meta.get_field(name) for name in names)


@cache
def _select_sql(
    model: type[models.Model],
    columns: tuple[str, ...],
    where: tuple[tuple[str, int], ...],
    lock: bool,
) -> str:
    meta = model._meta
    selected = ", ".join(_quote(c) for c in columns)
    sql = f"SELECT {selected} FROM {_quote(meta.db_table)} WHERE {_conditions(meta, where)}"  # noqa: S608
    return sql + " FOR UPDATE" if lock else sql


def _rows(sql: str, params: list) -> list[tuple]:
    return query(sql, params)


def _converted(model: type[models.Model], name: str, value):
    """A value of the column, as the ORM reads it back (a decimal comes back a Decimal)."""
    column = model._meta.get_field(name).get_col(model._meta.db_table)
    # The converters the ORM applies to this column, in its order: the backend's first.
    for converter in connection.ops.get_db_converters(column) + column.get_db_converters(
        connection
    ):
        value = converter(value, column, connection)
    return value


def values_where(model: type[models.Model], name: str, where: Mapping[str, object]) -> list:
    """One column of every row matching every `where` condition, in no given order:
    what .filter(**where).values_list(name, flat=True) returns."""
    sql = _select_sql(model, (model._meta.get_field(name).column,), _shape(where), lock=False)
    return [_converted(model, name, row[0]) for row in _rows(sql, _compared(model, where))]


def value_where(model: type[models.Model], name: str, where: Mapping[str, object]):
    """One column of the row matching every `where` condition (None if there is none).

    For a lookup by a unique key: what .filter(**where).values_list(name, flat=True)
    .first() returns.
    """
    values = values_where(model, name, where)
    return values[0] if values else None


@cache
def _sum_sql(model: type[models.Model], name: str, where: tuple[tuple[str, int], ...]) -> str:
    meta = model._meta
    column = _quote(meta.get_field(name).column)
    return f"SELECT sum({column}) FROM {_quote(meta.db_table)} WHERE {_conditions(meta, where)}"  # noqa: S608


def sum_where(model: type[models.Model], name: str, where: Mapping[str, object]):
    """The sum of one column over the rows matching every `where` condition (None for no
    row): what .filter(**where).aggregate(Sum(name)) gives, in one row whatever their
    number."""
    rows = _rows(_sum_sql(model, name, _shape(where)), _compared(model, where))
    return _converted(model, name, rows[0][0])


def sum_with(
    model: type[models.Model],
    name: str,
    where: Mapping[str, object],
    *,
    on_read: Callable[[object], None],
) -> None:
    """sum_where, read by the open write transaction after the writes added to it so
    far (in the same round trip on PostgreSQL) and given to `on_read` once it is sent;
    read at once outside any."""

    def returned(rows: list[tuple]) -> None:
        on_read(_converted(model, name, rows[0][0]))

    execute(
        Statement(
            _sum_sql(model, name, _shape(where)),
            _compared(model, where),
            returned=returned,
            is_select=True,
        )
    )


def instance_where(model: type[models.Model], where: Mapping[str, object]) -> models.Model | None:
    """The row matching every `where` condition, a unique key, as the ORM makes it (every
    column loaded): what .filter(**where).first() returns for a lookup by a unique key."""
    columns = tuple(f.column for f in model._meta.concrete_fields)
    rows = _rows(_select_sql(model, columns, _shape(where), lock=False), _compared(model, where))
    return _instance(model, rows[0]) if rows else None


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
    sql = _select_sql(model, (model._meta.pk.column,), _shape(where), lock=lock)
    execute(Statement(sql, _compared(model, where), expect=1, fail=or_raise, is_select=True))


def execute_sql(sql: str, params: list) -> None:
    """A statement of our own (an upsert, say), in the write transaction if one is open."""
    execute(Statement(sql, params))


@cache
def _read_back(model: type[models.Model]) -> tuple[tuple[str, ...], tuple[tuple, ...]]:
    """The attnames of the model's columns, in order, and the ORM's converters of each."""
    table = model._meta.db_table
    names, converters = [], []
    for field in model._meta.concrete_fields:
        column = field.get_col(table)
        names.append(field.attname)
        # The backend's converters first, then the field's: the ORM's order.
        converters.append(
            (
                column,
                tuple(connection.ops.get_db_converters(column))
                + tuple(column.get_db_converters(connection)),
            )
        )
    return tuple(names), tuple(converters)


def _instance(model: type[models.Model], values: Iterable) -> models.Model:
    names, converters = _read_back(model)
    db = _db()
    converted = []
    for value, (column, functions) in zip(values, converters, strict=True):
        for function in functions:
            value = function(value, column, db)
        converted.append(value)
    return model.from_db(db.alias, names, converted)


@cache
def _update_and_get_sql(
    model: type[models.Model],
    names: tuple[str, ...],
    unless_set: tuple[str, ...],
    where: tuple[tuple[str, int], ...],
    related: tuple[str, ...],
    columns: tuple[str, ...],
) -> str:
    meta = model._meta

    def assignment(name: str) -> str:
        quoted = _quote(meta.get_field(name).column)
        return f"{quoted} = COALESCE({quoted}, %s)" if name in unless_set else f"{quoted} = %s"

    sets = ", ".join(assignment(n) for n in names)
    # The changed row goes by the table's name, as in a query of the table: a column's
    # subquery may refer to it as the ORM's annotate() would have it (see `columns`).
    table = _quote(meta.db_table)
    selected = [f"{table}.{_quote(f.column)}" for f in meta.concrete_fields]
    joins = []
    for index, name in enumerate(related):
        field = meta.get_field(name)
        other, alias = field.related_model._meta, f"related_{index}"
        selected += [f"{alias}.{_quote(f.column)}" for f in other.concrete_fields]
        joins.append(
            f"{'LEFT' if field.null else 'INNER'} JOIN {_quote(other.db_table)} AS {alias} "
            f"ON {alias}.{_quote(field.target_field.column)} = {table}.{_quote(field.column)}"
        )
    selected += [f"({sql})" for sql in columns]
    # Identifiers from model metadata and the caller's SQL; every value is a parameter.
    return (
        f"WITH changed AS (UPDATE {table} SET {sets} "  # noqa: S608
        f"WHERE {_conditions(meta, where)} RETURNING *) "
        f"SELECT {', '.join(selected)} FROM changed AS {table} {' '.join(joins)}"
    )


def update_and_get(
    model: type[models.Model],
    values: Mapping[str, object],
    where: Mapping[str, object],
    *,
    unless_set: tuple[str, ...] = (),
    related: tuple[str, ...] = (),
    columns: Mapping[str, RawSQL] | None = None,
    durable: bool = True,
) -> models.Model | None:
    """UPDATE the one row matching every `where` condition (its primary key among them) and
    read it back with the rows of its `related` foreign keys, as select_related()
    would, and the value of each of `columns` (scalar subqueries, as for annotate(), which
    may refer to the row by its table's name) set as an attribute, converted as
    annotate() would. None if no row matched.

    One statement on PostgreSQL (the update in a WITH), where the ORM sends an UPDATE
    and then a SELECT; those two elsewhere. Fields in `unless_set` keep the value
    they have, if they have one (COALESCE). Plain values only, as in update_where.
    `durable`: as agentops.db.batch.write_transaction's.
    """
    if connection.vendor != "postgresql":
        kept = {n: Coalesce(n, Value(v)) if n in unless_set else v for n, v in values.items()}
        if not model._default_manager.filter(**where).update(**kept):
            return None
        rows = model._default_manager.all()
        if related:
            rows = rows.select_related(*related)
        return rows.annotate(**(columns or {})).get(pk=where[model._meta.pk.name])
    columns = columns or {}
    sql = _update_and_get_sql(
        model,
        tuple(values),
        unless_set,
        _shape(where),
        related,
        tuple(c.sql for c in columns.values()),
    )
    params = [*_prepared(model, values), *_compared(model, where)]
    params += [p for c in columns.values() for p in c.params]
    rows = query(sql, params, durable=durable)
    if not rows:
        return None
    row = rows[0]
    start = len(model._meta.concrete_fields)
    obj = _instance(model, row[:start])
    for name in related:
        field = model._meta.get_field(name)
        other = field.related_model
        end = start + len(other._meta.concrete_fields)
        values_of_other = row[start:end]
        pk_index = [f.attname for f in other._meta.concrete_fields].index(other._meta.pk.attname)
        field.set_cached_value(
            obj, None if values_of_other[pk_index] is None else _instance(other, values_of_other)
        )
        start = end
    for (name, column), value in zip(columns.items(), row[start:], strict=True):
        # Converted as annotate() would (a JSON column comes back decoded).
        for converter in connection.ops.get_db_converters(column) + column.get_db_converters(
            connection
        ):
            value = converter(value, column, connection)
        setattr(obj, name, value)
    return obj
