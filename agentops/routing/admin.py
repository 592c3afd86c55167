from django.contrib import admin

from agentops.routing.models import ModelPrice, Route


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    list_display = [
        "model",
        "input_per_mtok",
        "output_per_mtok",
        "cache_read_per_mtok",
        "cache_write_per_mtok",
        "updated_at",
    ]
    search_fields = ["model"]


@admin.register(Route)
class RouteAdmin(admin.ModelAdmin):
    list_display = [
        "priority",
        "name",
        "enabled",
        "intent",
        "ambiguity",
        "min_amount_cents",
        "model",
    ]
    list_display_links = ["name"]
    list_editable = ["enabled", "model"]
    list_filter = ["enabled", "ambiguity"]
