from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from agentops.models import ApiToken, Effect, Run, Ticket

admin.site.site_header = "agentops admin"
admin.site.site_title = "agentops admin"
admin.site.index_title = "Tickets, runs, the ledger, policy and tokens"


@admin.register(Ticket)
class TicketAdmin(admin.ModelAdmin):
    list_display = ["subject", "customer_email", "source", "external_id", "received_at"]
    list_filter = ["source"]
    search_fields = ["customer_email", "subject", "external_id"]
    readonly_fields = ["code"]
    date_hierarchy = "received_at"


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = [
        "code",
        "status",
        "model",
        "ticket",
        "cost",
        "step_count",
        "created_at",
        "run_page",
    ]
    list_filter = ["status", "model"]
    list_select_related = ["ticket"]
    search_fields = ["code", "ticket__customer_email", "ticket__subject", "trace_id"]
    raw_id_fields = ["ticket"]
    # What the agent said and did is evidence: it is shown, never edited by hand.
    readonly_fields = [
        "run_page",
        "code",
        "trace_id",
        "messages",
        "tool_results",
        "triage",
        "step_count",
        "model_calls",
        "input_tokens",
        "output_tokens",
        "cost",
        "created_at",
        "started_at",
        "finished_at",
        "updated_at",
    ]
    # The runs list is the busiest table; counting it on every page is not worth it.
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # runs are created by intake, with their ticket

    @admin.display(description="Run page")
    def run_page(self, obj: Run) -> str:
        if obj.pk is None:
            return "—"
        return format_html(
            '<a href="{}">Open the run page</a>', reverse("run_detail", args=[obj.code])
        )


@admin.register(Effect)
class EffectAdmin(admin.ModelAdmin):
    """The ledger is written only by the runtime: a hand edit could pay twice."""

    list_display = ["idempotency_key", "tool", "status", "attempts", "provider_ref", "created_at"]
    list_filter = ["status", "tool"]
    list_select_related = ["run"]
    search_fields = ["idempotency_key", "provider_ref", "run__code"]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Effect | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Effect | None = None) -> bool:
        return False


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "created_at", "last_used_at", "revoked_at", "is_active"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix"]
    # The hash is left out entirely: nothing about the secret is shown.
    fields = ["name", "prefix", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["prefix", "created_at", "last_used_at"]
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # A token is shown once, at creation: `manage.py create_api_token NAME` does that.
        return False

    @admin.display(boolean=True, description="Active")
    def is_active(self, obj: ApiToken) -> bool:
        return obj.is_active

    @admin.action(description="Revoke selected tokens", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        # Already-revoked tokens keep the time they were first revoked.
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(
            request, f"Revoked {count} token{'s' if count != 1 else ''}.", messages.SUCCESS
        )
