from django.contrib import admin
from django.http import HttpRequest

from evals.models import EvalResult, EvalRun, RegressionCase, ShadowSetting


@admin.register(RegressionCase)
class RegressionCaseAdmin(admin.ModelAdmin):
    list_display = ["name", "subject", "expected_status", "active", "created_at"]
    list_filter = ["active", "expected_status"]
    search_fields = ["name", "subject", "customer_email"]
    readonly_fields = ["code", "source_run", "created_at", "created_by"]


class EvalResultInline(admin.TabularInline):
    model = EvalResult
    fields = ["case", "passed", "failures", "cost", "run"]
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(EvalRun)
class EvalRunAdmin(admin.ModelAdmin):
    list_display = ["started_at", "prompt_version", "model", "cases", "passed", "cost"]
    readonly_fields = [
        "code",
        "prompt_version",
        "model",
        "started_at",
        "finished_at",
        "created_by",
        "cases",
        "passed",
        "cost",
    ]
    inlines = [EvalResultInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # eval runs come from `manage.py evals`


@admin.register(ShadowSetting)
class ShadowSettingAdmin(admin.ModelAdmin):
    list_display = ["enabled", "share_percent", "prompt_version", "model", "updated_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) and not ShadowSetting.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: ShadowSetting, form, change: bool) -> None:
        obj.pk = 1  # one row: the shadow hook reads pk=1
        super().save_model(request, obj, form, change)
