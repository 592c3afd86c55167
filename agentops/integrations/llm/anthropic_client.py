"""Claude through the official SDK (Messages API).

- The SDK's own retries are off (max_retries=0): all retrying happens in one place,
  the runtime, by agentops.runtime.errors' classification.
- Timeouts are explicit (connect, read, write, pool).
- The system prompt and the tool definitions are marked for prompt caching
  (cache_control on the system block and on the last tool, which caches all tools).
- SDK errors become agentops.integrations.errors: timeouts, connection failures,
  429 (with Retry-After), 5xx and 529 overloaded are transient; 400, 401, 403, 404
  and other 4xx are terminal, with the HTTP status in their code.
"""

from __future__ import annotations

import json
import threading

import anthropic
from django.conf import settings

from agentops.integrations.errors import (
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from agentops.integrations.llm import ModelResponse

PROVIDER = "anthropic"
CACHE_CONTROL = {"type": "ephemeral"}

# Terminal 4xx, named as the SDK names them, so the trace says what was wrong.
_TERMINAL_CODES = {
    400: "invalid_request",
    401: "authentication_error",
    403: "permission_denied",
    404: "not_found",
    413: "request_too_large",
    422: "unprocessable",
}


def _timeout() -> anthropic.Timeout:
    read = settings.ANTHROPIC_TIMEOUT_SECONDS
    return anthropic.Timeout(read, connect=min(10.0, read))


_sdk_clients: dict[tuple, anthropic.Anthropic] = {}
_sdk_lock = threading.Lock()


def _sdk_client() -> anthropic.Anthropic:
    """One SDK client per configuration and process: it keeps its connections alive.

    (Building one costs a TLS context; per call that was most of a fast call's time.)
    """
    config = (
        settings.ANTHROPIC_API_KEY,
        settings.ANTHROPIC_BASE_URL,
        settings.ANTHROPIC_TIMEOUT_SECONDS,
    )
    with _sdk_lock:
        client = _sdk_clients.get(config)
        if client is None:
            client = _sdk_clients[config] = anthropic.Anthropic(
                api_key=config[0] or None,
                base_url=config[1] or None,
                max_retries=0,
                timeout=_timeout(),
            )
        return client


class AnthropicClient:
    name = PROVIDER

    def __init__(self) -> None:
        self._client = _sdk_client()

    def create(self, *, model, system, messages, tools, max_tokens) -> ModelResponse:
        try:
            message = self._client.messages.create(
                model=model,
                system=cached_system(system),
                messages=messages,
                tools=cached_tools(tools),
                max_tokens=max_tokens,
            )
        except anthropic.APITimeoutError as exc:
            # A read-only call: nothing to commit, safe to retry.
            raise ProviderTimeout(
                f"timeout: {exc}", provider=PROVIDER, may_have_committed=False
            ) from exc
        except anthropic.APIConnectionError as exc:
            raise ProviderUnavailable(f"connection: {exc}", provider=PROVIDER) from exc
        except anthropic.RateLimitError as exc:
            raise RateLimited(
                f"429 rate limited: {_message(exc)}",
                provider=PROVIDER,
                retry_after=_retry_after(exc),
            ) from exc
        except anthropic.APIStatusError as exc:
            status = exc.status_code
            if status >= 500 or status == 408 or status == 409:
                kind = "overloaded" if status == 529 else "server error"
                raise ProviderUnavailable(
                    f"{status} {kind}: {_message(exc)}", provider=PROVIDER, status_code=status
                ) from exc
            code = _TERMINAL_CODES.get(status, f"http_{status}")
            raise ProviderRejected(
                f"{status} {code}: {_message(exc)}", provider=PROVIDER, code=code
            ) from exc
        except (anthropic.APIResponseValidationError, json.JSONDecodeError) as exc:
            # A 200 whose body is not a Message: a broken gateway, not our request.
            raise ProviderUnavailable(
                f"malformed response body: {exc}", provider=PROVIDER, status_code=502
            ) from exc
        usage = message.usage.model_dump(exclude_none=True) if message.usage else {}
        return ModelResponse(
            content=[block.model_dump(exclude_none=True) for block in message.content or []],
            stop_reason=message.stop_reason or "",
            model=message.model,
            usage={k: v for k, v in usage.items() if isinstance(v, int)},
            id=message.id,
        )


def cached_system(system: str) -> list[dict]:
    """The system prompt as one text block marked for prompt caching."""
    return [{"type": "text", "text": system, "cache_control": CACHE_CONTROL}]


def cached_tools(tools: list[dict]) -> list[dict]:
    """The tools with the last one marked: a cache breakpoint there caches them all."""
    out = [dict(tool) for tool in tools]
    if out:
        out[-1]["cache_control"] = CACHE_CONTROL
    return out


def _message(exc: anthropic.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return f"{error.get('type', '')}: {error['message']}".strip(": ")
    return str(exc)


def _retry_after(exc: anthropic.APIStatusError) -> float | None:
    value = exc.response.headers.get("retry-after") if exc.response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
