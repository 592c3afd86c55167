"""The Engineers group: may replay runs (dry run) and keep the regression set.

Live replay (real side effects) is granted to no group: an admin gives it to a person.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

ENGINEER_PERMISSIONS = [
    "replay_run",
    "add_regressioncase",
    "change_regressioncase",
    "view_regressioncase",
    "view_evalrun",
    "view_shadowsetting",
]


def add_group(apps, schema_editor):
    # Permissions are normally created after all migrations; this one needs them now.
    for config in apps.get_app_configs():
        config.models_module = True
        create_permissions(config, verbosity=0, apps=apps)
        config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name="Engineers")
    group.permissions.add(
        *Permission.objects.filter(
            content_type__app_label="evals", codename__in=ENGINEER_PERMISSIONS
        )
    )


def remove_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name="Engineers").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("evals", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(add_group, remove_group)]
