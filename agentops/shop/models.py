from django.db import models
from django.db.models import Q
from django.utils import timezone


class Customer(models.Model):
    email = models.EmailField(unique=True)
    name = models.CharField(max_length=200)

    class Meta:
        ordering = ["email"]

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"


class Order(models.Model):
    class Status(models.TextChoices):
        PLACED = "placed"
        SHIPPED = "shipped"
        DELIVERED = "delivered"
        CANCELLED = "cancelled"

    order_id = models.CharField(max_length=32, unique=True)  # e.g. ORD-10023
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="orders")
    total_cents = models.PositiveIntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=16, choices=Status)
    placed_at = models.DateTimeField()
    delivered_at = models.DateTimeField(null=True, blank=True)
    # Unique so a tracking number resolves to exactly one order.
    tracking_number = models.CharField(max_length=64, unique=True, null=True, blank=True)
    payment_ref = models.CharField(max_length=64)  # e.g. pi_3P...

    class Meta:
        ordering = ["-placed_at"]
        constraints = [
            models.CheckConstraint(condition=Q(total_cents__gt=0), name="order_total_positive"),
        ]
        indexes = [
            # The simulated provider locks the charge by payment_ref at every refund
            # (SELECT ... WHERE payment_ref = %s ORDER BY id LIMIT 1 FOR UPDATE).
            # With id in the index it serves the order too, whatever the statistics
            # say: on payment_ref alone, stale ones made PostgreSQL walk the primary
            # key through every order instead (6 ms a refund on the bench's 38k).
            models.Index(fields=["payment_ref", "id"], name="shop_order_payment_ref_id"),
        ]

    def __str__(self) -> str:
        return self.order_id


class Refund(models.Model):
    """A refund the shop knows it made, whoever made it (support staff or the agent)."""

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="refunds")
    amount_cents = models.PositiveIntegerField()
    # The payment provider's refund id; unique, so recording a refund is idempotent.
    reference = models.CharField(max_length=64, unique=True)
    reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(amount_cents__gt=0), name="refund_amount_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.reference} {self.amount_cents} on {self.order_id}"
