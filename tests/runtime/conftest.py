"""Fixtures for driving the agent loop in-process: a shop, tickets, a scripted model."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from django.utils import timezone

from agentops.integrations.llm import ModelResponse
from agentops.services import ticket_submit
from agentops.shop.models import Customer, Order
from tests.fakes.fixtures import fake_stripe, messages_api  # noqa: F401  (fixtures)

_seq = itertools.count(20001)


@pytest.fixture(autouse=True)
def _fast_retries(settings):
    settings.RETRY_BASE_DELAY_SECONDS = 0.001
    settings.RETRY_MAX_DELAY_SECONDS = 0.01
    settings.OFFLINE_MODEL_LATENCY_MS = 0


@pytest.fixture
def make_order(db):
    def make(
        *,
        email="ada@example.com",
        total_cents=2500,
        currency="USD",
        status="delivered",
        tracking=None,
        **extra,
    ):
        customer, _ = Customer.objects.get_or_create(email=email, defaults={"name": "Ada"})
        n = next(_seq)
        return Order.objects.create(
            order_id=f"ORD-{n}",
            customer=customer,
            total_cents=total_cents,
            currency=currency,
            status=status,
            placed_at=timezone.now() - timedelta(days=10),
            delivered_at=timezone.now() - timedelta(days=5) if status == "delivered" else None,
            tracking_number=tracking,
            payment_ref=f"pi_test{n:020d}",
            **extra,
        )

    return make


@pytest.fixture
def submit(db):
    def submit(body, *, email="ada@example.com", subject="Help"):
        return ticket_submit(customer_email=email, subject=subject, body=body).run

    return submit


@pytest.fixture
def refund_ticket(make_order, submit, settings):
    """A factory of the standard ticket: a refund of a delivered order, no gateway faults."""
    settings.GATEWAY_LATENCY_MS = 0
    settings.GATEWAY_TIMEOUT_AFTER_COMMIT = 0
    settings.GATEWAY_RATE_LIMIT = 0
    settings.GATEWAY_SERVER_ERROR = 0

    def new():
        order = make_order(total_cents=2000)
        return submit(f"My order {order.order_id} arrived broken. Please refund it.")

    return new


class ScriptedModel:
    """Returns the given responses in order; each is a list of blocks or an exception."""

    def __init__(self, *responses):
        self.responses = list(responses)
        self.calls: list[list[dict]] = []

    def create(self, *, model, system, messages, tools, max_tokens):
        self.calls.append(messages)
        item = self.responses.pop(0)
        if isinstance(item, BaseException):
            raise item
        uses = [b for b in item if b.get("type") == "tool_use"]
        return ModelResponse(
            content=item,
            stop_reason="tool_use" if uses else "end_turn",
            model="scripted",
            usage={"input_tokens": 10, "output_tokens": 5},
            id=f"msg_{len(self.calls)}",
        )


def tool_use(name, input, id=None):
    return {
        "type": "tool_use",
        "id": id or f"toolu_{name}_{abs(hash(str(input))) % 10**8}",
        "name": name,
        "input": input,
    }


def text(t):
    return {"type": "text", "text": t}


@pytest.fixture
def scripted(monkeypatch):
    def install(*responses):
        model = ScriptedModel(*responses)
        monkeypatch.setattr("agentops.runtime.loop.get_model_client", lambda name: model)
        return model

    return install
