from collections.abc import Callable

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from approvals.models import (
    ApprovalLimit,
    AutonomySetting,
    Decision,
    PendingAction,
    PolicyChange,
    RejectReason,
    RiskPolicy,
)
from approvals.services import (
    DECIDE_PERMISSION,
    ActionAlreadyDecided,
    action_approve,
    action_reject,
    autonomy_save,
    policy_save,
)

ADMIN_REJECT_REASON = "Rejected in admin"


class _ReadOnly:
    """Append-only records: viewable, never added, changed or deleted by hand."""

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class PolicyChangeInline(_ReadOnly, admin.TabularInline):
    model = PolicyChange
    fk_name = "policy"
    extra = 0
    fields = ["version", "changed_at", "changed_by", "old", "new"]
    readonly_fields = fields
    ordering = ["-version"]
    verbose_name_plural = "History of changes"


@admin.register(RiskPolicy)
class RiskPolicyAdmin(admin.ModelAdmin):
    list_display = [
        "tool",
        "currency",
        "approval_threshold_cents",
        "four_eyes_threshold_cents",
        "block_above_cents",
        "version",
        "updated_at",
    ]
    list_editable = ["approval_threshold_cents"]
    list_filter = ["tool"]
    readonly_fields = ["version", "updated_at"]
    inlines = [PolicyChangeInline]
    fieldsets = [
        (None, {"fields": ["tool", "currency"]}),
        (
            "Amounts (minor units of the currency)",
            {
                "fields": [
                    "approval_threshold_cents",
                    "four_eyes_threshold_cents",
                    "block_above_cents",
                ]
            },
        ),
        (
            "Per-customer rolling limits",
            {"fields": ["window_days", "max_refunds_in_window", "max_total_in_window_cents"]},
        ),
        (
            "Orders and tickets",
            {
                "fields": [
                    "undelivered_needs_approval",
                    "old_order_days",
                    "ambiguous_needs_approval",
                ]
            },
        ),
        ("Version", {"fields": ["version", "updated_at"]}),
    ]

    def save_model(self, request: HttpRequest, obj: RiskPolicy, form, change: bool) -> None:
        # Through the service: every change is kept with who, when, old and new.
        policy_save(policy=obj, actor=request.user)


@admin.register(AutonomySetting)
class AutonomySettingAdmin(admin.ModelAdmin):
    list_display = ["share_percent", "version", "updated_at"]
    readonly_fields = ["version", "updated_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) and not AutonomySetting.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: AutonomySetting, form, change: bool) -> None:
        obj.pk = 1
        autonomy_save(setting=obj, actor=request.user)


@admin.register(PolicyChange)
class PolicyChangeAdmin(_ReadOnly, admin.ModelAdmin):
    list_display = ["label", "version", "changed_by", "changed_at"]
    list_filter = ["subject"]
    search_fields = ["label", "changed_by__username"]
    fields = ["subject", "label", "version", "policy", "changed_by", "changed_at", "old", "new"]
    readonly_fields = fields


@admin.register(RejectReason)
class RejectReasonAdmin(admin.ModelAdmin):
    list_display = ["label", "code", "active", "position"]
    list_editable = ["active", "position"]


@admin.register(ApprovalLimit)
class ApprovalLimitAdmin(admin.ModelAdmin):
    list_display = ["user", "group", "currency", "max_amount_cents"]
    list_filter = ["currency", "group"]
    search_fields = ["user__username", "group__name"]


@admin.register(Decision)
class DecisionAdmin(_ReadOnly, admin.ModelAdmin):
    list_display = ["action", "verdict", "actor", "reason_code", "created_at"]
    list_filter = ["verdict", "reason_code"]
    list_select_related = ["action", "actor", "reason_code"]
    search_fields = ["action__code", "actor__username", "comment"]
    fields = [
        "action",
        "verdict",
        "actor",
        "reason_code",
        "comment",
        "policy_version",
        "approver_limit_cents",
        "created_at",
    ]
    readonly_fields = fields


@admin.register(PendingAction)
class PendingActionAdmin(admin.ModelAdmin):
    """Shown as it was proposed; changed only by a decision (the actions below)."""

    list_display = [
        "code",
        "tool",
        "amount_cents",
        "currency",
        "status",
        "run_page",
        "created_at",
        "decided_by",
    ]
    list_filter = ["status", "tool"]
    list_select_related = ["run", "decided_by"]
    search_fields = ["code", "run__code", "run__ticket__customer_email"]
    actions = ["approve", "reject"]
    fields = [
        "code",
        "run_page",
        "tool",
        "tool_use_id",
        "args",
        "amount_cents",
        "currency",
        "rules",
        "reasoning",
        "policy_version",
        "approvals_required",
        "first_approved_by",
        "status",
        "decided_by",
        "decided_at",
        "reason",
        "reason_code",
        "created_at",
    ]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: PendingAction | None = None) -> bool:
        return False

    def has_decide_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(DECIDE_PERMISSION)

    @admin.display(description="Run")
    def run_page(self, obj: PendingAction) -> str:
        return format_html(
            '<a href="{}">{}</a>', reverse("run_detail", args=[obj.run.code]), obj.run.code
        )

    @admin.action(description="Approve selected pending actions", permissions=["decide"])
    def approve(self, request: HttpRequest, queryset: QuerySet[PendingAction]) -> None:
        self._decide(
            request, queryset, lambda action: action_approve(action=action, actor=request.user)
        )

    @admin.action(description="Reject selected pending actions", permissions=["decide"])
    def reject(self, request: HttpRequest, queryset: QuerySet[PendingAction]) -> None:
        self._decide(
            request,
            queryset,
            lambda action: action_reject(
                action=action, actor=request.user, reason=ADMIN_REJECT_REASON
            ),
        )

    def _decide(
        self,
        request: HttpRequest,
        queryset: QuerySet[PendingAction],
        decide: Callable[[PendingAction], PendingAction],
    ) -> None:
        decided = 0
        for action in queryset.select_related("decided_by"):
            try:
                action = decide(action)
            except ActionAlreadyDecided as exc:
                now = exc.action
                who = now.decided_by or "the system"
                self.message_user(
                    request, f"{action.code}: already {now.status} by {who}.", messages.WARNING
                )
            except PermissionDenied as exc:
                self.message_user(request, str(exc), messages.ERROR)
                return
            else:
                decided += 1
        if decided:
            self.message_user(
                request,
                f"Decided {decided} action{'s' if decided != 1 else ''}; their runs are queued.",
                messages.SUCCESS,
            )
