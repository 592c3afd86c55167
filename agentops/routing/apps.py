from django.apps import AppConfig


class RoutingConfig(AppConfig):
    """Model prices and the route table: which model triages and which runs the loop."""

    name = "agentops.routing"
    label = "routing"
    verbose_name = "Model routing and prices"
