"""A small Stripe refunds API for tests: Stripe's idempotency behaviour and injected faults.

The real `stripe` SDK talks to it over HTTP (STRIPE_API_BASE). It knows the
payments it is given (`charges[payment_ref] = (amount, currency)`) and serves:

- POST /v1/refunds (form-encoded, `payment_intent` or `charge`, `amount`,
  `metadata[...]`), with the Idempotency-Key header: the same key and the same
  parameters replay the first answer; the same key with other parameters is a
  400 idempotency_error; over-refunds are 400 charge_already_refunded or
  amount_too_large; an unknown payment is 404 resource_missing.
- GET /v1/refunds (`payment_intent` / `charge`, `created[gte]`, `limit`,
  `starting_after`): newest first, paginated like Stripe's lists.

Faults, per POST: scripted ones first (`push("429", "500", "timeout_after_commit",
"drop_after_commit")`), then random ones (`rate_429`, `rate_500`,
`rate_timeout_after_commit`, seeded). A timeout after commit makes the refund and
then answers too late; the refund exists, the client does not know it.
"""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
from collections import deque
from urllib.parse import parse_qsl, urlsplit

from tests.fakes.server import FakeServer, read_body, send

API_KEY = "sk_test_fake_4242"


class FakeStripe(FakeServer):
    def __init__(self, *, seed: int = 11) -> None:
        super().__init__()
        self.charges: dict[str, tuple[int, str]] = {}
        self.refunds: list[dict] = []
        self.script: deque[str] = deque()
        self.rate_429 = self.rate_500 = self.rate_timeout_after_commit = 0.0
        self.timeout_sleep = 1.5  # past the fixture's client timeout (1 s)
        self.posts = 0
        self.faults_served: dict[str, int] = {}
        self._idempotent: dict[str, tuple[dict, int, bytes]] = {}
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._clock = itertools.count(int(time.time()))

    def push(self, *faults: str) -> None:
        self.script.extend(faults)

    # --- HTTP ----------------------------------------------------------------------

    def handle(self, handler) -> None:
        if handler.headers.get("Authorization", "") != f"Bearer {API_KEY}":
            return send(handler, 401, _error("invalid_request_error", None, "Invalid API Key"))
        url = urlsplit(handler.path)
        if url.path != "/v1/refunds":
            return send(handler, 404, _error("invalid_request_error", None, "Unrecognized URL"))
        if handler.command == "GET":
            return self._list(handler, dict(parse_qsl(url.query)))
        return self._create(handler, dict(parse_qsl(read_body(handler).decode())))

    def _create(self, handler, form: dict) -> None:
        key = handler.headers.get("Idempotency-Key") or ""
        with self._lock:
            self.posts += 1
            fault = self.script.popleft() if self.script else self._random_fault()
            if fault:
                self.faults_served[fault] = self.faults_served.get(fault, 0) + 1
            if fault == "429":
                return send(
                    handler, 429, _error("invalid_request_error", "rate_limit", "Too many requests")
                )
            if fault == "500":
                return send(handler, 500, _error("api_error", None, "Something went wrong"))
            params = {k: v for k, v in form.items()}
            if key in self._idempotent:
                first, status, body = self._idempotent[key]
                if first != params:
                    return send(
                        handler,
                        400,
                        _error(
                            "idempotency_error",
                            None,
                            "Keys for idempotent requests can only be used with the same "
                            "parameters they were first used with.",
                        ),
                    )
                return send(handler, status, body, {"Idempotent-Replayed": "true"})
            status, body = self._refund(params)
            if key:
                self._idempotent[key] = (params, status, body)
        if fault == "timeout_after_commit":
            time.sleep(self.timeout_sleep)  # committed; the client has given up by now
        if fault == "drop_after_commit":
            handler.close_connection = True
            handler.connection.shutdown(2)
            return None
        return send(handler, status, body)

    def _random_fault(self) -> str | None:
        draw = self._rng.random()
        for name, rate in (
            ("429", self.rate_429),
            ("500", self.rate_500),
            ("timeout_after_commit", self.rate_timeout_after_commit),
        ):
            if draw < rate:
                return name
            draw -= rate
        return None

    def _refund(self, params: dict) -> tuple[int, bytes]:
        payment = params.get("payment_intent") or params.get("charge") or ""
        if payment not in self.charges:
            return 404, _error(
                "invalid_request_error", "resource_missing", f"No such payment: '{payment}'"
            )
        try:
            amount = int(params.get("amount", ""))
        except ValueError:
            return 400, _error("invalid_request_error", "parameter_invalid_integer", "amount")
        total, currency = self.charges[payment]
        left = total - sum(r["amount"] for r in self.refunds if _payment(r) == payment)
        if left <= 0:
            return 400, _error(
                "invalid_request_error",
                "charge_already_refunded",
                f"Charge {payment} has already been refunded.",
            )
        if amount > left:
            return 400, _error(
                "invalid_request_error",
                "amount_too_large",
                f"Refund amount ({amount}) is greater than unrefunded amount ({left}).",
            )
        refund = {
            "id": f"re_fake{next(self._ids):08d}",
            "object": "refund",
            "amount": amount,
            "currency": currency.lower(),
            "charge": payment if payment.startswith("ch_") else f"ch_for_{payment}",
            "payment_intent": payment if not payment.startswith("ch_") else None,
            "created": next(self._clock),
            "metadata": {
                k[len("metadata[") : -1]: v for k, v in params.items() if k.startswith("metadata[")
            },
            "status": "succeeded",
        }
        self.refunds.append(refund)
        return 200, json.dumps(refund).encode()

    def _list(self, handler, query: dict) -> None:
        with self._lock:
            rows = sorted(self.refunds, key=lambda r: (r["created"], r["id"]), reverse=True)
        payment = query.get("payment_intent") or query.get("charge")
        if payment:
            rows = [r for r in rows if _payment(r) == payment or r["charge"] == payment]
        if "created[gte]" in query:
            rows = [r for r in rows if r["created"] >= int(query["created[gte]"])]
        if "starting_after" in query:
            ids = [r["id"] for r in rows]
            rows = rows[ids.index(query["starting_after"]) + 1 :]
        limit = int(query.get("limit", 10))
        page = {
            "object": "list",
            "url": "/v1/refunds",
            "has_more": len(rows) > limit,
            "data": rows[:limit],
        }
        send(handler, 200, json.dumps(page).encode())

    # --- what the tests look at ---------------------------------------------------

    def refunds_for(self, payment: str) -> list[dict]:
        return [r for r in self.refunds if _payment(r) == payment]

    def duplicates(self) -> list[tuple[str, str]]:
        """(ticket, order) pairs refunded more than once."""
        seen: dict[tuple[str, str], int] = {}
        for r in self.refunds:
            pair = (r["metadata"].get("ticket", ""), r["metadata"].get("order", ""))
            seen[pair] = seen.get(pair, 0) + 1
        return [pair for pair, n in seen.items() if n > 1]


def _payment(refund: dict) -> str:
    return refund["payment_intent"] or refund["charge"]


def _error(error_type: str, code: str | None, message: str) -> bytes:
    error = {"type": error_type, "message": message}
    if code:
        error["code"] = code
    return json.dumps({"error": error}).encode()
