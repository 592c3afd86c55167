"""A small Anthropic Messages API server for tests: scripted responses and injected faults.

The real `anthropic` SDK talks to it over HTTP (ANTHROPIC_BASE_URL). Each POST
/v1/messages takes the next scripted item, if any:

- a dict: a Message's fields (content, stop_reason, usage, ...), answered 200;
- Fault(status, error_type, headers): an error answer in the API's shape;
- Fault(sleep=seconds): answer only after the client gave up (a timeout);
- Fault(raw=b"..."): a 200 whose body is not JSON.

With nothing scripted, `default(request)` answers (for example the offline model
over HTTP), after the random faults `rate_429`, `rate_500`, `rate_529` and
`rate_timeout` (probabilities, seeded).
"""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from tests.fakes.server import FakeServer, read_body, send

API_KEY = "sk-ant-test-fake"


@dataclass
class Fault:
    status: int = 0
    error_type: str = ""
    headers: dict = field(default_factory=dict)
    sleep: float = 0.0
    raw: bytes | None = None


def message(content, *, stop_reason=None, usage=None, model="claude-sonnet-4-6", id=None):
    uses = [b for b in content if b.get("type") == "tool_use"]
    return {
        "id": id or f"msg_{random.randrange(10**12):012d}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason or ("tool_use" if uses else "end_turn"),
        "stop_sequence": None,
        "usage": usage or {"input_tokens": 100, "output_tokens": 20},
    }


class FakeMessagesAPI(FakeServer):
    def __init__(self, *, default=None, seed: int = 7) -> None:
        super().__init__()
        self.script: deque = deque()
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.default = default
        self.rate_429 = self.rate_500 = self.rate_529 = self.rate_timeout = 0.0
        self.timeout_sleep = 1.0
        self.faults_served: dict[str, int] = {}
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def push(self, *items) -> None:
        self.script.extend(items)

    def handle(self, handler) -> None:
        body = read_body(handler)
        if handler.path.split("?")[0] != "/v1/messages" or handler.command != "POST":
            return send(handler, 404, _error("not_found_error", "no such endpoint"))
        key = handler.headers.get("x-api-key") or handler.headers.get("Authorization", "")
        if key.removeprefix("Bearer ") != API_KEY:
            return send(handler, 401, _error("authentication_error", "invalid x-api-key"))
        request = json.loads(body)
        with self._lock:
            self.requests.append(request)
            self.headers.append(dict(handler.headers))
            item = self.script.popleft() if self.script else None
            if item is None:
                item = self._random_fault()
        if isinstance(item, Fault):
            return self._fault(handler, item)
        if item is None:
            item = self.default(request)
        reply = message(**item) if "type" not in item else item
        send(handler, 200, json.dumps(reply).encode())

    def _random_fault(self) -> Fault | None:
        draw = self._rng.random()
        for name, rate, fault in (
            ("429", self.rate_429, Fault(429, "rate_limit_error", {"retry-after": "0.01"})),
            ("500", self.rate_500, Fault(500, "api_error")),
            ("529", self.rate_529, Fault(529, "overloaded_error")),
            ("timeout", self.rate_timeout, Fault(sleep=self.timeout_sleep)),
        ):
            if draw < rate:
                self.faults_served[name] = self.faults_served.get(name, 0) + 1
                return fault
            draw -= rate
        return None

    def _fault(self, handler, fault: Fault) -> None:
        if fault.sleep:
            time.sleep(fault.sleep)
            return send(
                handler, 200, json.dumps(message([{"type": "text", "text": "late"}])).encode()
            )
        if fault.raw is not None:
            return send(handler, 200, fault.raw)
        send(
            handler,
            fault.status,
            _error(fault.error_type, f"injected {fault.status}"),
            fault.headers,
        )


def _error(error_type: str, text: str) -> bytes:
    return json.dumps({"type": "error", "error": {"type": error_type, "message": text}}).encode()


def offline_over_http(request: dict) -> dict:
    """The offline model's answer, as the Messages API would send it."""
    from agentops.integrations.llm.offline import OfflineModel

    system = request.get("system")
    if isinstance(system, list):
        system = "\n".join(b.get("text", "") for b in system)
    response = OfflineModel().create(
        model=request["model"],
        system=system or "",
        messages=request["messages"],
        tools=request.get("tools", []),
        max_tokens=request["max_tokens"],
    )
    usage = dict(response.usage)
    usage.setdefault("cache_read_input_tokens", 0)
    usage.setdefault("cache_creation_input_tokens", 0)
    return {
        "content": response.content,
        "stop_reason": response.stop_reason,
        "usage": usage,
        "model": request["model"],
    }
