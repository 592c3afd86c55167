"""Seed list prices (USD per million tokens) and the default route table."""

from decimal import Decimal

from django.db import migrations

PRICES = [
    # model, input, output, cache read, cache write (5 minute)
    ("claude-haiku-4-5", "1", "5", "0.10", "1.25"),
    ("claude-sonnet-4-5", "3", "15", "0.30", "3.75"),
    ("claude-opus-4-5", "5", "25", "0.50", "6.25"),
    # The current generation; the 4-5 models above reach end of life in late 2026.
    ("claude-sonnet-4-6", "3", "15", "0.30", "3.75"),
    ("claude-opus-4-6", "5", "25", "0.50", "6.25"),
    ("offline", "0", "0", "0", "0"),
]

ROUTES = [
    # name, priority, ambiguity, min_amount_cents, model
    ("Ambiguous tickets", 10, "ambiguous", None, "claude-opus-4-6"),
    ("High-value refunds", 20, "any", 20000, "claude-opus-4-6"),
    ("Everything else", 100, "any", None, "claude-sonnet-4-6"),
]


def seed(apps, schema_editor):
    ModelPrice = apps.get_model("routing", "ModelPrice")
    Route = apps.get_model("routing", "Route")
    for model, i, o, cr, cw in PRICES:
        ModelPrice.objects.get_or_create(
            model=model,
            defaults={
                "input_per_mtok": Decimal(i),
                "output_per_mtok": Decimal(o),
                "cache_read_per_mtok": Decimal(cr),
                "cache_write_per_mtok": Decimal(cw),
            },
        )
    for name, priority, ambiguity, min_amount, model in ROUTES:
        Route.objects.get_or_create(
            name=name,
            defaults={
                "priority": priority,
                "ambiguity": ambiguity,
                "min_amount_cents": min_amount,
                "model": model,
            },
        )


class Migration(migrations.Migration):
    dependencies = [("routing", "0001_initial")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
