"""Fixtures of the integration tests: the fake outside APIs."""

from tests.fakes.fixtures import fake_stripe, messages_api  # noqa: F401
