"""The Anthropic client: the real SDK over HTTP against a local Messages API server."""

import pytest

from agentops.integrations.errors import (
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from agentops.integrations.llm.anthropic_client import AnthropicClient
from agentops.runtime.errors import TERMINAL, TRANSIENT, classify
from agentops.runtime.tools import tool_definitions
from tests.fakes.messages_api import API_KEY, FakeMessagesAPI, Fault


@pytest.fixture
def api(settings):
    with FakeMessagesAPI() as server:
        settings.ANTHROPIC_API_KEY = API_KEY
        settings.ANTHROPIC_BASE_URL = server.url
        settings.ANTHROPIC_TIMEOUT_SECONDS = 0.3
        yield server


def create(**overrides):
    args = {
        "model": "claude-sonnet-4-6",
        "system": "You are a support agent.",
        "messages": [{"role": "user", "content": "Refund ORD-10001 please"}],
        "tools": tool_definitions(),
        "max_tokens": 256,
    }
    args.update(overrides)
    return AnthropicClient().create(**args)


def test_it_marks_the_system_prompt_and_the_tools_for_prompt_caching(api):
    api.push({"content": [{"type": "text", "text": "Hello"}]})
    create()

    sent = api.requests[0]
    assert sent["system"] == [
        {"type": "text", "text": "You are a support agent.", "cache_control": {"type": "ephemeral"}}
    ]
    assert sent["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert all("cache_control" not in tool for tool in sent["tools"][:-1])
    sent_key = api.headers[0].get("x-api-key") or api.headers[0]["Authorization"]
    assert sent_key.removeprefix("Bearer ") == API_KEY


def test_it_sends_tool_schemas_generated_from_the_pydantic_models(api):
    api.push({"content": [{"type": "text", "text": "Hello"}]})
    create()

    refund = next(t for t in api.requests[0]["tools"] if t["name"] == "issue_refund")
    schema = refund["input_schema"]
    assert schema["type"] == "object"
    assert set(schema["required"]) == {"order_id", "amount_cents", "reason"}
    assert schema["properties"]["amount_cents"]["type"] == "integer"
    assert schema["additionalProperties"] is False


def test_it_returns_content_stop_reason_and_usage_with_cache_tokens(api):
    usage = {
        "input_tokens": 120,
        "output_tokens": 30,
        "cache_read_input_tokens": 900,
        "cache_creation_input_tokens": 50,
    }
    use = {"type": "tool_use", "id": "toolu_01", "name": "lookup_order", "input": {"order_id": "X"}}
    api.push({"content": [{"type": "text", "text": "Looking"}, use], "usage": usage, "id": "m1"})

    response = create()

    assert response.stop_reason == "tool_use"
    assert response.tool_uses == [use]
    assert response.usage == usage
    assert response.id == "m1"


@pytest.mark.parametrize(
    ("fault", "error", "error_class", "code"),
    [
        (
            Fault(429, "rate_limit_error", {"retry-after": "2.5"}),
            RateLimited,
            TRANSIENT,
            "rate_limited",
        ),
        (Fault(529, "overloaded_error"), ProviderUnavailable, TRANSIENT, "unavailable_529"),
        (Fault(500, "api_error"), ProviderUnavailable, TRANSIENT, "unavailable_500"),
        (Fault(400, "invalid_request_error"), ProviderRejected, TERMINAL, "invalid_request"),
        (Fault(401, "authentication_error"), ProviderRejected, TERMINAL, "authentication_error"),
        (Fault(403, "permission_error"), ProviderRejected, TERMINAL, "permission_denied"),
        (Fault(404, "not_found_error"), ProviderRejected, TERMINAL, "not_found"),
        (Fault(sleep=0.6), ProviderTimeout, TRANSIENT, "timeout"),
        (
            Fault(raw=b'{"id": "msg_1", "content": [tru'),
            ProviderUnavailable,
            TRANSIENT,
            "unavailable_502",
        ),
    ],
    ids=["429", "529", "500", "400", "401", "403", "404", "timeout", "malformed-json"],
)
def test_each_failure_is_classified_once_and_the_sdk_does_not_retry(
    api, fault, error, error_class, code
):
    api.push(fault)

    with pytest.raises(error) as caught:
        create()

    c = classify(caught.value)
    assert (c.error_class, c.code) == (error_class, code)
    assert len(api.requests) == 1  # max_retries=0: retrying is the runtime's job
    if isinstance(caught.value, RateLimited):
        assert c.retry_after == 2.5


def test_a_timeout_of_a_model_call_never_counts_as_a_possibly_committed_write(api):
    api.push(Fault(sleep=0.6))
    with pytest.raises(ProviderTimeout) as caught:
        create()
    assert classify(caught.value).outcome_unknown is False


def test_a_wrong_key_is_terminal_and_says_so(api, settings):
    settings.ANTHROPIC_API_KEY = "sk-ant-wrong"
    with pytest.raises(ProviderRejected) as caught:
        create()
    assert caught.value.code == "authentication_error"
    assert "invalid x-api-key" in str(caught.value)
    assert classify(caught.value).error_class == TERMINAL
