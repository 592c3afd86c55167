"""Claude through the official SDK. The SDK's own retries are off: the runtime retries."""

from __future__ import annotations

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


class AnthropicClient:
    name = PROVIDER

    def __init__(self) -> None:
        self._client = anthropic.Anthropic(
            api_key=settings.ANTHROPIC_API_KEY or None,
            base_url=settings.ANTHROPIC_BASE_URL or None,
            max_retries=0,
            timeout=settings.ANTHROPIC_TIMEOUT_SECONDS,
        )

    def create(self, *, model, system, messages, tools, max_tokens) -> ModelResponse:
        try:
            message = self._client.messages.create(
                model=model,
                system=system,
                messages=messages,
                tools=tools,
                max_tokens=max_tokens,
            )
        except anthropic.APITimeoutError as exc:
            # A read-only call: nothing to commit, safe to retry.
            raise ProviderTimeout(str(exc), provider=PROVIDER, may_have_committed=False) from exc
        except anthropic.APIConnectionError as exc:
            raise ProviderUnavailable(str(exc), provider=PROVIDER) from exc
        except anthropic.RateLimitError as exc:
            raise RateLimited(str(exc), provider=PROVIDER, retry_after=_retry_after(exc)) from exc
        except anthropic.APIStatusError as exc:
            if exc.status_code >= 500:  # 500, 529 overloaded
                raise ProviderUnavailable(
                    str(exc), provider=PROVIDER, status_code=exc.status_code
                ) from exc
            raise ProviderRejected(
                str(exc), provider=PROVIDER, code=f"http_{exc.status_code}"
            ) from exc
        return ModelResponse(
            content=[block.model_dump(exclude_none=True) for block in message.content],
            stop_reason=message.stop_reason or "",
            model=message.model,
            usage=message.usage.model_dump(exclude_none=True),
            id=message.id,
        )


def _retry_after(exc: anthropic.APIStatusError) -> float | None:
    value = exc.response.headers.get("retry-after") if exc.response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
