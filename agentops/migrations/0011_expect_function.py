"""agentops_expect(): a write transaction sent in one round trip fails inside the server.

agentops.db.batch sends a step's writes in one round trip (one transaction). A
statement that must change or lock exactly the rows it expects (the run's lease
fence) is wrapped in this function, which raises when it did not, so that the
server keeps nothing of the transaction. PostgreSQL only: SQLite runs the
statements one by one and checks them in Python.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION agentops_expect(actual bigint, expected bigint, tag text)
RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    IF actual <> expected THEN
        RAISE EXCEPTION USING ERRCODE = 'AO001', MESSAGE = tag;
    END IF;
    RETURN actual;
END
$$
"""
DROP = "DROP FUNCTION IF EXISTS agentops_expect(bigint, bigint, text)"


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("agentops", "0010_config_token")]

    operations = [migrations.RunPython(create, drop)]
