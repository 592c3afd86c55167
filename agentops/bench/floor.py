"""The floor: a bare Celery task doing five single-row INSERTs, no agentops code.

Whatever agentops costs per ticket is measured against this, on the same
database, broker and workers, in the same run.
"""

from celery import shared_task
from django.db import connection

TABLE = "bench_floor"


def floor_table_create() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} ("  # noqa: S608 - a constant
            "id bigserial PRIMARY KEY, ticket integer NOT NULL, step integer NOT NULL, "
            "payload text NOT NULL, created_at timestamptz NOT NULL DEFAULT clock_timestamp())"
        )
        # Each benchmark starts from an empty table: no earlier run's rows are counted.
        cursor.execute(f"TRUNCATE {TABLE}")  # noqa: S608 - a constant


@shared_task(ignore_result=True, acks_late=True)
def bench_floor_ticket(ticket: int) -> None:
    with connection.cursor() as cursor:
        for step in range(5):
            cursor.execute(
                f"INSERT INTO {TABLE} (ticket, step, payload) VALUES (%s, %s, %s)",  # noqa: S608
                [ticket, step, "x" * 200],
            )
