from django.apps import AppConfig


class SimGatewayConfig(AppConfig):
    """The simulated payment provider's own records (the embedded default gateway)."""

    name = "agentops.simgateway"
    label = "simgateway"
    verbose_name = "Simulated payment gateway"
