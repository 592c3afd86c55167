"""The simulated provider's side in the admin.

Its refunds are read-only, as a real provider's dashboard would be: they are
what the shop's records are reconciled against. Scripted faults are editable,
so an engineer can stage an incident for a given payment.
"""

from django.contrib import admin

from agentops.simgateway.models import ProviderRefund, ScriptedFault


@admin.register(ProviderRefund)
class ProviderRefundAdmin(admin.ModelAdmin):
    list_display = (
        "refund_id",
        "payment_ref",
        "amount_cents",
        "currency",
        "idempotency_key",
        "created_at",
    )
    list_filter = ("currency",)
    search_fields = ("=refund_id", "=payment_ref", "idempotency_key")
    date_hierarchy = "created_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ScriptedFault)
class ScriptedFaultAdmin(admin.ModelAdmin):
    list_display = ("payment_ref", "kind", "remaining")
    list_editable = ("remaining",)
    list_filter = ("kind",)
    search_fields = ("=payment_ref",)
