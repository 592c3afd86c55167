from collections.abc import Callable

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from approvals.models import PendingAction, RiskPolicy
from approvals.services import (
    DECIDE_PERMISSION,
    ActionAlreadyDecided,
    action_approve,
    action_reject,
)

ADMIN_REJECT_REASON = "Rejected in admin"


@admin.register(RiskPolicy)
class RiskPolicyAdmin(admin.ModelAdmin):
    list_display = ["tool", "currency", "approval_threshold_cents", "updated_at"]
    list_editable = ["approval_threshold_cents"]
    list_filter = ["tool"]


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
        "status",
        "decided_by",
        "decided_at",
        "reason",
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
