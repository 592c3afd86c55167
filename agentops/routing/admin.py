from django.contrib import admin

from agentops.routing.models import DailySpend, ModelPrice, Route


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


@admin.register(DailySpend)
class DailySpendAdmin(admin.ModelAdmin):
    """The daily cap's counter: written by the runtime, read here, never edited."""

    list_display = ["day", "shard", "cost"]
    date_hierarchy = "day"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
