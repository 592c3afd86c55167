"""Writes of the demo shop: importing orders from JSON lines."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Annotated

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic import Strict as StrictMode

from agentops.shop.directory import normalise_order_id, normalise_tracking_number
from agentops.shop.models import Customer, Order

ORDER_ID_RE = re.compile(r"^ORD-\d+$")
CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
TRACKING_RE = re.compile(r"^[A-Z0-9]{6,64}$")
PAYMENT_REF_RE = re.compile(r"^[A-Za-z0-9_\-]{3,64}$")
# Order.total_cents is a PositiveIntegerField: 32-bit signed on every backend.
MAX_TOTAL_CENTS = 2_147_483_647

# JSON mode with Strict: datetimes must be strings (no Unix timestamps), and
# amounts must be JSON integers (no "12.50", no 12.5, no true).
StrictDatetime = Annotated[AwareDatetime, StrictMode()]


class OrderLine(BaseModel):
    """One line of an orders file, as `import_orders` accepts it."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    order_id: StrictStr
    customer_email: StrictStr
    customer_name: StrictStr = Field(min_length=1, max_length=200)
    total_cents: StrictInt = Field(gt=0, le=MAX_TOTAL_CENTS)
    currency: StrictStr
    status: StrictStr
    placed_at: StrictDatetime
    delivered_at: StrictDatetime | None = None
    tracking_number: StrictStr | None = None
    payment_ref: StrictStr

    @field_validator("order_id")
    @classmethod
    def _order_id(cls, value: str) -> str:
        value = normalise_order_id(value)
        if not ORDER_ID_RE.match(value) or len(value) > 32:
            raise ValueError(f"must look like ORD-10023, got {value!r}")
        return value

    @field_validator("customer_email")
    @classmethod
    def _email(cls, value: str) -> str:
        try:
            validate_email(value)
        except DjangoValidationError:
            raise ValueError(f"not a valid email address: {value!r}") from None
        return value.lower()

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        value = value.upper()
        if not CURRENCY_RE.match(value):
            raise ValueError(f"must be a 3-letter ISO code like USD, got {value!r}")
        return value

    @field_validator("status")
    @classmethod
    def _status(cls, value: str) -> str:
        value = value.lower()
        if value not in Order.Status.values:
            raise ValueError(f"must be one of {', '.join(Order.Status.values)}, got {value!r}")
        return value

    @field_validator("tracking_number")
    @classmethod
    def _tracking_number(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = normalise_tracking_number(value)
        if not TRACKING_RE.match(value):
            raise ValueError(f"must be 6 to 64 letters and digits, got {value!r}")
        return value

    @field_validator("payment_ref")
    @classmethod
    def _payment_ref(cls, value: str) -> str:
        if not PAYMENT_REF_RE.match(value):
            raise ValueError(f"must be 3 to 64 letters, digits, _ or -, got {value!r}")
        return value

    @model_validator(mode="after")
    def _dates_agree_with_status(self) -> OrderLine:
        if self.delivered_at is not None and self.delivered_at < self.placed_at:
            raise ValueError("delivered_at is before placed_at")
        if self.status == "delivered" and self.delivered_at is None:
            raise ValueError("a delivered order needs delivered_at")
        if self.status in ("placed", "shipped") and self.delivered_at is not None:
            raise ValueError(f"a {self.status} order cannot have delivered_at")
        return self


@dataclass(frozen=True)
class LineError:
    line: int | None  # None: about the whole file
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


@dataclass(frozen=True)
class ImportReport:
    orders: int = 0
    customers: int = 0  # distinct customers the imported orders belong to
    new_customers: int = 0
    errors: tuple[LineError, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.errors


def _messages(error: ValidationError) -> list[str]:
    messages = []
    for item in error.errors():
        # Our own validators' messages, without pydantic's "Value error, " prefix.
        text = str(item["ctx"]["error"]) if item["type"] == "value_error" else item["msg"]
        where = ".".join(str(part) for part in item["loc"])
        messages.append(f"{where}: {text}" if where else text)
    return messages


def orders_import(*, lines: Iterable[str]) -> ImportReport:
    """Import orders from JSON lines: all of them, or none.

    Every line is validated first (fields, duplicates within the file, clashes
    with orders already stored); if any is bad, the report lists every bad line
    by number and nothing is written. Blank lines are skipped. Customers are
    matched by email, and created when new.
    """
    parsed: list[tuple[int, OrderLine]] = []
    errors: list[LineError] = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            parsed.append((number, OrderLine.model_validate_json(raw)))
        except ValidationError as exc:
            errors.extend(LineError(number, message) for message in _messages(exc))

    errors.extend(_clashes(parsed))
    if errors:
        return ImportReport(errors=tuple(sorted(errors, key=lambda e: e.line or 0)))

    try:
        return _write(parsed)
    except IntegrityError as exc:
        # Something else wrote a clashing order between validation and write;
        # the transaction rolled back, so nothing of this file is stored.
        return ImportReport(
            errors=(LineError(None, f"orders changed while importing, nothing imported: {exc}"),)
        )


def _clashes(parsed: list[tuple[int, OrderLine]]) -> list[LineError]:
    """Duplicates within the file, and orders, tracking numbers or payments already stored."""
    errors: list[LineError] = []
    seen: dict[tuple[str, str], int] = {}
    for number, line in parsed:
        for label, value in (
            ("order_id", line.order_id),
            ("tracking_number", line.tracking_number),
            ("payment_ref", line.payment_ref),
        ):
            if value is None:
                continue
            first = seen.setdefault((label, value), number)
            if first != number:
                errors.append(LineError(number, f"{label} {value} is already on line {first}"))

    def stored(field_name: str, values: set[str]) -> dict[str, str]:
        rows = Order.objects.filter(**{f"{field_name}__in": values}).values_list(
            field_name, "order_id"
        )
        return dict(rows)

    order_ids = stored("order_id", {line.order_id for _, line in parsed})
    tracking = stored("tracking_number", {ln.tracking_number for _, ln in parsed} - {None})
    payments = stored("payment_ref", {line.payment_ref for _, line in parsed})
    for number, line in parsed:
        if line.order_id in order_ids:
            errors.append(LineError(number, f"order {line.order_id} already exists"))
        if line.tracking_number in tracking:
            errors.append(
                LineError(
                    number,
                    f"tracking_number {line.tracking_number} already belongs to "
                    f"{tracking[line.tracking_number]}",
                )
            )
        if line.payment_ref in payments:
            errors.append(
                LineError(
                    number,
                    f"payment_ref {line.payment_ref} is already used by "
                    f"{payments[line.payment_ref]}",
                )
            )
    return errors


@transaction.atomic
def _write(parsed: list[tuple[int, OrderLine]]) -> ImportReport:
    customers: dict[str, Customer] = {}
    new_customers = 0
    orders = []
    for _, line in parsed:
        customer = customers.get(line.customer_email)
        if customer is None:
            customer = Customer.objects.filter(email__iexact=line.customer_email).first()
            if customer is None:
                customer = Customer.objects.create(
                    email=line.customer_email, name=line.customer_name
                )
                new_customers += 1
            customers[line.customer_email] = customer
        orders.append(
            Order(
                order_id=line.order_id,
                customer=customer,
                total_cents=line.total_cents,
                currency=line.currency,
                status=line.status,
                placed_at=line.placed_at,
                delivered_at=line.delivered_at,
                tracking_number=line.tracking_number,
                payment_ref=line.payment_ref,
            )
        )
    Order.objects.bulk_create(orders)
    return ImportReport(orders=len(orders), customers=len(customers), new_customers=new_customers)
