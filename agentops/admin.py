import json

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from agentops.models import ApiToken, Effect, PromptVersion, Run, Ticket
from agentops.prompt_versions import prompt_version_make_current
from agentops.runtime.prompts import SYSTEM_PROMPT
from agentops.runtime.tools import TOOLS

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
    list_filter = ["status", "mode", "model"]
    list_select_related = ["ticket"]
    search_fields = ["code", "ticket__customer_email", "ticket__subject", "trace_id"]
    raw_id_fields = ["ticket"]
    # What the agent said and did is evidence: it is shown, never edited by hand.
    readonly_fields = [
        "run_page",
        "code",
        "trace_id",
        "conversation",
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
        # What a replay was asked for and found.
        "prompt_version",
        "mode",
        "replay_of",
        "replay_from_step",
        "dry_run",
        "replay_tool_results",
        "divergence",
        "requested_by",
    ]
    # The runs list is the busiest table; counting it on every page is not worth it.
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # runs are created by intake, with their ticket

    @admin.display(description="Messages")
    def conversation(self, obj: Run) -> str:
        """The conversation's turns, as JSON (they are rows of their own, not a field)."""
        return format_html("<pre>{}</pre>", json.dumps(obj.messages, indent=2))

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


@admin.register(PromptVersion)
class PromptVersionAdmin(admin.ModelAdmin):
    """What the model is told, as versions. A version a run used is evidence: read-only."""

    list_display = ["name", "is_current", "created_at", "created_by", "notes"]
    list_filter = ["is_current"]
    search_fields = ["name", "notes"]
    fields = ["name", "system_prompt", "tool_descriptions", "notes", "is_current", "created_by"]
    readonly_fields = ["is_current", "created_by"]
    actions = ["make_current"]

    def get_readonly_fields(self, request: HttpRequest, obj: PromptVersion | None = None):
        if obj is not None and obj.runs.exists():
            return self.fields
        return self.readonly_fields

    def has_delete_permission(self, request: HttpRequest, obj: PromptVersion | None = None):
        if obj is not None and obj.runs.exists():
            return False
        return super().has_delete_permission(request, obj)

    def get_changeform_initial_data(self, request: HttpRequest) -> dict:
        # A new version starts from the built-in prompt and tool descriptions.
        return {
            "system_prompt": SYSTEM_PROMPT,
            "tool_descriptions": {name: tool.description for name, tool in TOOLS.items()},
        }

    def save_model(self, request, obj: PromptVersion, form, change: bool) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    @admin.action(description="Make the selected version current", permissions=["change"])
    def make_current(self, request: HttpRequest, queryset: QuerySet[PromptVersion]) -> None:
        versions = list(queryset[:2])
        if len(versions) != 1:
            self.message_user(request, "Select exactly one version.", messages.ERROR)
            return
        prompt_version_make_current(version=versions[0])
        self.message_user(
            request, f"{versions[0].name} is now the current prompt version.", messages.SUCCESS
        )
