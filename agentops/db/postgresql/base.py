"""Django's PostgreSQL backend, with JSON columns encoded by orjson.

A ticket writes some 35 JSON values (its turns, spans, ledger rows and the run's
state); the standard library's json.dumps was ~4% of a ticket's Python (py-spy of
the benchmark's workload). orjson writes the same JSON: per ticket, alternating the
two in one process, 0.13-0.15 ms less CPU. A value orjson refuses (an integer past
64 bits) goes to json.dumps, which raises what it always did for what neither can
write (a Decimal, a set). Reading is unchanged: jsonb comes back through
JSONField.from_db_value.
"""

from __future__ import annotations

import json

import orjson
from django.db.backends.postgresql import base, operations
from psycopg.types.json import Jsonb


def json_dumps(value) -> bytes | str:
    """JSON text for a jsonb column: keys that are not strings become strings, as
    json.dumps makes them."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return json.dumps(value)


class DatabaseOperations(operations.DatabaseOperations):
    def adapt_json_value(self, value, encoder):
        if encoder is not None:  # a field's own encoder class is json's
            return super().adapt_json_value(value, encoder)
        return Jsonb(value, dumps=json_dumps)


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations
