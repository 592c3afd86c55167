from django.db import migrations

REASONS = [
    ("wrong_order", "Wrong order"),
    ("over_policy", "Over policy"),
    ("suspected_fraud", "Suspected fraud"),
    ("needs_info", "Needs more information"),
    ("other", "Other"),
]


def add_reasons(apps, schema_editor):
    RejectReason = apps.get_model("approvals", "RejectReason")
    for position, (code, label) in enumerate(REASONS):
        RejectReason.objects.get_or_create(code=code, defaults={"label": label, "position": position})


class Migration(migrations.Migration):
    dependencies = [("approvals", "0002_policy_decisions_limits")]

    operations = [migrations.RunPython(add_reasons, migrations.RunPython.noop)]
