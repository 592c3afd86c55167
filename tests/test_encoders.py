"""agentops.db.encoders sends what the model fields themselves would, on SQLite and
PostgreSQL: every column of the models the hot path writes, for values of every
kind they take (and kinds they should not, which the field handles as it always did).
"""

import warnings
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from django.db import connection, models
from django.db.models import Value
from django.utils.functional import lazy
from psycopg.types.json import Jsonb

from agentops.db.encoders import column_encoder, value_encoder
from agentops.models import Effect, Run, Ticket, Turn
from agentops.routing.models import DailySpend
from agentops.shop.models import Order, Refund
from traces.models import Span

HOT_MODELS = (Span, Turn, Effect, Run, Ticket, DailySpend, Order, Refund)


class Colour(str):
    """A str of another class: not the shortcut's, so it takes the field's own path."""


def _lazy_text():
    return lazy(lambda: "later", str)()


SAMPLES = [
    None,
    "",
    "plain",
    "héllo ☃",
    Colour("red"),
    Span.Kind.MODEL,  # a TextChoices member
    _lazy_text(),
    0,
    7,
    2**40,
    -3,
    True,
    False,
    1.5,
    Decimal("0.001234"),
    Decimal("12"),
    datetime(2026, 12, 7, 13, 5, 1, 123456, tzinfo=UTC),
    datetime(2026, 12, 7, 13, 5, 1, tzinfo=timezone(timedelta(hours=-5))),
    date(2026, 12, 7),
    {},
    {"messages": [{"role": "user", "content": "hi"}], "n": 1.25, "ok": None},
    [],
    [1, "two", {"three": 3}],
    Value(None),
]


def _comparable(value):
    """Jsonb wraps its document and compares by identity: compare what it holds."""
    if isinstance(value, Jsonb):
        return ("jsonb", value.obj, value.dumps)
    if hasattr(value, "resolve_expression"):
        return ("expression", repr(value))
    return (type(value), value)


def _outcome(function, *args):
    """What a call gives back or raises, in a form two calls can be compared by."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = ("value", _comparable(function(*args)))
        except Exception as error:  # noqa: BLE001 - the kind of failure is what is compared
            result = ("raised", type(error))
    return result, [(w.category, str(w.message)) for w in caught]


def _fields() -> list:
    return [
        pytest.param(field, id=f"{model.__name__}.{field.name}")
        for model in HOT_MODELS
        for field in model._meta.concrete_fields
    ]


@pytest.mark.parametrize("field", _fields())
def test_a_value_is_encoded_as_its_field_encodes_it(field):
    encode = value_encoder(field)
    for sample in SAMPLES:
        assert _outcome(encode, sample, connection) == _outcome(
            field.get_db_prep_save, sample, connection
        ), sample


@pytest.mark.django_db
@pytest.mark.parametrize("add", [True, False])
@pytest.mark.parametrize("model", [Span, Effect])
def test_a_column_is_read_from_the_instance_as_the_field_reads_it(model, add):
    """pre_save included: Effect.updated_at is auto_now (the field sets it), its
    created_at auto_now_add (set when added only)."""
    ticket = Ticket.objects.create(customer_email="ada@example.com", subject="s", body="b")
    run = Run.objects.create(ticket=ticket, trace_id="0" * 32)
    earlier = datetime(2020, 1, 1, tzinfo=UTC)
    if model is Span:
        obj = Span(run=run, span_id="a" * 16, kind=Span.Kind.TOOL, name="n", started_at=earlier)
    else:
        obj = Effect(idempotency_key="k", ticket=ticket, run=run, tool="issue_refund", request={})
        obj.created_at = obj.updated_at = earlier
    for field in model._meta.concrete_fields:
        fast = column_encoder(field, add=add)(obj, connection)
        kept = getattr(obj, field.attname)
        slow = field.get_db_prep_save(field.pre_save(obj, add), connection)
        if getattr(field, "auto_now", False) or (getattr(field, "auto_now_add", False) and add):
            # Each call takes the time anew: both set the attribute to a later time.
            assert getattr(obj, field.attname) > earlier and kept > earlier, field.name
        else:
            assert _comparable(fast) == _comparable(slow), field.name


class Shouting(models.CharField):
    """A field of our own that encodes its values its own way, as a subclass may."""

    def get_prep_value(self, value):
        return super().get_prep_value(value).upper()


def test_a_subclass_of_a_field_encodes_its_values_its_own_way():
    field = Shouting(max_length=10)
    field.set_attributes_from_name("word")

    assert value_encoder(field)("quiet", connection) == "QUIET"
