from django.apps import AppConfig


class ShopConfig(AppConfig):
    """The demo shop: customers, orders and their refunds.

    The agent's tools reach it only through agentops.integrations.orders, so a
    real order API can replace it without touching the runtime.
    """

    name = "agentops.shop"
    label = "shop"
    verbose_name = "Demo shop"
