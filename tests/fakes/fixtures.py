"""Fixtures that start the fake outside APIs; import them into a test module to use them."""

import pytest

from tests.fakes.messages_api import API_KEY as ANTHROPIC_KEY
from tests.fakes.messages_api import FakeMessagesAPI
from tests.fakes.stripe_api import API_KEY, FakeStripe


@pytest.fixture
def fake_stripe(settings):
    with FakeStripe() as server:
        settings.PAYMENTS_BACKEND = "stripe"
        settings.STRIPE_API_KEY = API_KEY
        settings.STRIPE_API_BASE = server.url
        # Long enough for an answer from a loaded CI machine (0.25 s timed out a plain
        # 429 once); the fake sleeps past it for a timeout after commit.
        settings.STRIPE_TIMEOUT_SECONDS = 1.0
        server.charges["pi_1"] = (5000, "usd")
        yield server


@pytest.fixture
def messages_api(settings):
    with FakeMessagesAPI() as server:
        settings.ANTHROPIC_API_KEY = ANTHROPIC_KEY
        settings.ANTHROPIC_BASE_URL = server.url
        settings.ANTHROPIC_TIMEOUT_SECONDS = 0.3
        settings.TRIAGE_MODEL = "offline"
        yield server
