from django.contrib import admin
from django.http import HttpRequest

from traces.models import AlertRule, Incident, Span


@admin.register(Span)
class SpanAdmin(admin.ModelAdmin):
    """Spans are the record of what happened; nobody edits history."""

    list_display = [
        "span_id",
        "run",
        "step",
        "kind",
        "name",
        "status",
        "error_class",
        "attempt",
        "started_at",
    ]
    list_filter = ["kind", "status", "error_class"]
    list_select_related = ["run"]
    search_fields = ["span_id", "run__trace_id", "name", "run__code"]
    # Spans outnumber runs by an order of magnitude; skip the full COUNT(*).
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Span | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Span | None = None) -> bool:
        return False


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    list_display = ["name", "metric", "threshold", "window_minutes", "enabled"]
    list_editable = ["threshold", "enabled"]
    list_filter = ["metric", "enabled"]


@admin.register(Incident)
class IncidentAdmin(admin.ModelAdmin):
    """Opened and closed by the checks; read-only here."""

    list_display = ["rule", "value", "opened_at", "resolved_at"]
    list_filter = ["rule"]
    list_select_related = ["rule"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Incident | None = None) -> bool:
        return False
