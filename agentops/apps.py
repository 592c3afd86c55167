from django.apps import AppConfig
from django.db import connections
from django.db.models.signals import post_migrate


def _config_triggers(*, using: str, **kwargs) -> None:
    """After every migrate (and flush): SQLite drops a table's triggers when a migration
    rebuilds it, and a schema change should be read anew, so reinstall and replace."""
    from agentops.db.config_token import config_triggers_install

    config_triggers_install(connections[using])


class AgentopsConfig(AppConfig):
    name = "agentops"
    verbose_name = "agentops"

    def ready(self) -> None:
        post_migrate.connect(_config_triggers, sender=self, dispatch_uid="agentops_config_token")
