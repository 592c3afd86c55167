"""A model field's value for the database, as the field encodes it, at less cost.

Field.get_db_prep_save() runs a chain of calls for every value (the field's
get_prep_value, to_python, the backend's adapt_*): ~1-2 us each, and a ticket's hot
path encodes ~340 values, most of them a str, an int, an aware datetime or a JSON
document that the chain hands to the backend's adapter unchanged. An encoder here
sends those straight to the same adapter and everything else (a Decimal, a lazy
string, an enum member, an expression, a foreign key) through the field itself, so
what reaches the database is what the ORM would send (tests/test_encoders.py
compares the two for every column of the hot path's models). Only Django's own field
classes take the shortcut: a subclass may encode its values its own way.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import cache
from typing import Any

from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper

_TEXT = (models.CharField, models.TextField)
_INTEGER = (
    models.SmallIntegerField,
    models.IntegerField,
    models.BigIntegerField,
    models.PositiveSmallIntegerField,
    models.PositiveIntegerField,
    models.PositiveBigIntegerField,
)

# (value, connection) -> what field.get_db_prep_save(value, connection) returns.
Encoder = Callable[[Any, BaseDatabaseWrapper], Any]


@cache
def value_encoder(field: models.Field) -> Encoder:
    """The field's get_db_prep_save, with a shortcut for the plain values it passes on.

    The connection is an argument, not kept: each thread has its own.
    """
    slow = field.get_db_prep_save
    kind = type(field)
    if kind in _TEXT:
        # CharField.to_python returns a str as it is; None stays None.
        return lambda value, db: (
            value if value.__class__ is str or value is None else slow(value, db)
        )
    if kind in _INTEGER:
        internal_type = field.get_internal_type()
        return lambda value, db: (
            db.ops.adapt_integerfield_value(value, internal_type)
            if value.__class__ is int
            else slow(value, db)
        )
    if kind is models.DateTimeField:
        # An aware datetime goes to the backend as it is; a naive one is warned about
        # and made aware by the field.
        return lambda value, db: (
            db.ops.adapt_datetimefield_value(value)
            if value.__class__ is datetime and value.utcoffset() is not None
            else slow(value, db)
        )
    if kind is models.JSONField:
        encoder = field.encoder
        return lambda value, db: (
            db.ops.adapt_json_value(value, encoder)
            if value.__class__ is dict or value.__class__ is list
            else slow(value, db)
        )
    return slow


def _plain_pre_save(field: models.Field) -> bool:
    """Whether field.pre_save(obj, add) is only the attribute's value."""
    if type(field).pre_save is models.Field.pre_save:
        return True
    # DateField and DateTimeField set the time themselves only for auto_now(_add).
    return isinstance(field, models.DateField) and not (field.auto_now or field.auto_now_add)


@cache
def column_encoder(field: models.Field, *, add: bool) -> Callable[[models.Model, Any], Any]:
    """(obj, connection) -> field.get_db_prep_save(field.pre_save(obj, add), connection)."""
    encode = value_encoder(field)
    if _plain_pre_save(field):
        attname = field.attname
        return lambda obj, db: encode(getattr(obj, attname), db)
    return lambda obj, db: encode(field.pre_save(obj, add), db)
