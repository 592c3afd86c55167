"""The indexes the provider's refund path writes and reads (PostgreSQL)."""

import pytest
from django.db import connection

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="varchar_pattern_ops indexes are PostgreSQL's"
    ),
]


def _indexes(table: str) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE tablename = %s", [table])
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.parametrize(
    ("table", "column", "unique"),
    [
        ("simgateway_providerrefund", "refund_id", True),
        ("simgateway_providerrefund", "idempotency_key", True),
        ("simgateway_providerrefund", "payment_ref", False),
        ("shop_refund", "reference", True),
    ],
)
def test_a_refund_key_keeps_its_btree_and_loses_the_pattern_one(table, column, unique):
    indexes = [d for d in _indexes(table) if f"({column}" in d]
    assert len(indexes) == 1, indexes
    assert indexes[0].startswith("CREATE UNIQUE INDEX") == unique
    assert "varchar_pattern_ops" not in indexes[0]


def test_the_provider_finds_the_charge_by_its_payment_through_an_index():
    # With the id: the lock's ORDER BY id comes from the index, whatever the statistics.
    assert any("(payment_ref, id)" in d for d in _indexes("shop_order"))


def test_the_provider_lock_query_uses_the_charge_index():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "EXPLAIN SELECT id FROM shop_order WHERE payment_ref = 'pi_x' "
            "ORDER BY id LIMIT 1 FOR UPDATE"
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "shop_order_payment_ref_id" in plan, plan
