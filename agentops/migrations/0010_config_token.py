"""The config token and the triggers that replace it on every write of the tables the
agent loop keeps per process (issue 8): prompt versions, the autonomy share, risk
policies and their changes, model prices, routes, shadow mode. See agentops.db.config_token.
"""

from django.db import migrations, models

from agentops.db.config_token import config_token_triggers


class Migration(migrations.Migration):
    dependencies = [
        ("agentops", "0009_effect_ticket_tool_index"),
        ("approvals", "0003_reject_reasons"),
        ("evals", "0002_engineers_group"),
        ("routing", "0003_daily_spend"),
    ]

    operations = [
        migrations.CreateModel(
            name="ConfigToken",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("token", models.CharField(max_length=64)),
            ],
            options={
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(("id", 1)), name="config_token_one_row"
                    )
                ],
            },
        ),
        config_token_triggers(),
    ]
