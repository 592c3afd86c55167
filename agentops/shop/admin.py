"""The demo shop in the Django admin.

Refunds are read-only: each one mirrors a refund the payment provider made, so
editing it here would make the shop disagree with the provider's records.
"""

from django.contrib import admin
from django.db.models import Count

from agentops.money import money_format
from agentops.shop.models import Customer, Order, Refund


class ReadOnlyMixin:
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class RefundInline(ReadOnlyMixin, admin.TabularInline):
    model = Refund
    extra = 0
    fields = ("reference", "amount_cents", "reason", "created_at")
    readonly_fields = fields


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ("email", "name", "order_count")
    search_fields = ("email", "name")

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(order_count=Count("orders"))

    @admin.display(description="orders", ordering="order_count")
    def order_count(self, customer: Customer) -> int:
        return customer.order_count


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = (
        "order_id",
        "customer",
        "total",
        "status",
        "placed_at",
        "delivered_at",
        "tracking_number",
        "payment_ref",
    )
    list_filter = ("status", "currency")
    list_select_related = ("customer",)
    # "=" is an exact, case-insensitive match: ids are pasted in any case.
    search_fields = ("=order_id", "=tracking_number", "customer__email", "=payment_ref")
    date_hierarchy = "placed_at"
    autocomplete_fields = ("customer",)
    inlines = (RefundInline,)

    @admin.display(description="total", ordering="total_cents")
    def total(self, order: Order) -> str:
        return money_format(cents=order.total_cents, currency=order.currency)


@admin.register(Refund)
class RefundAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("reference", "order", "amount", "reason", "created_at")
    list_select_related = ("order",)
    search_fields = ("=reference", "=order__order_id", "order__customer__email")
    date_hierarchy = "created_at"

    @admin.display(description="amount", ordering="amount_cents")
    def amount(self, refund: Refund) -> str:
        return money_format(cents=refund.amount_cents, currency=refund.order.currency)
