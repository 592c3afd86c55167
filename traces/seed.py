"""Synthetic traces in bulk, for the benchmark and for trying the trace browser at scale.

Rows look like the runtime's: a root span per run, triage, model calls with the
occasional transient retry, validation, policy, tool attempts, approvals and a
reply, with error classes in realistic shares. Tickets carry an external id
starting with SEED_PREFIX so seeded rows can be told apart and cleared.
"""

from __future__ import annotations

import io
import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.db import connection, transaction
from django.utils import timezone

from agentops.models import Run, Ticket
from traces.models import Span

SEED_PREFIX = "seed-"
MODELS = [("claude-sonnet-4-5", 0.6), ("claude-haiku-4-5", 0.3), ("claude-opus-4-5", 0.1)]
PRICES = {  # USD per million tokens, in / out
    "claude-haiku-4-5": (Decimal(1), Decimal(5)),
    "claude-sonnet-4-5": (Decimal(3), Decimal(15)),
    "claude-opus-4-5": (Decimal(5), Decimal(25)),
}
STATUSES = [
    (Run.Status.RESOLVED, 0.70),
    (Run.Status.ESCALATED, 0.15),
    (Run.Status.FAILED, 0.05),
    (Run.Status.AWAITING_APPROVAL, 0.04),
    (Run.Status.RUNNING, 0.02),
    (Run.Status.QUEUED, 0.04),
]
TOOLS = ["lookup_order", "find_orders", "issue_refund", "send_reply"]

RUN_COLUMNS = [
    "id",
    "code",
    "ticket_id",
    "status",
    "model",
    "trace_id",
    "tool_results",
    "triage",
    "step_count",
    "model_calls",
    "input_tokens",
    "output_tokens",
    "cost",
    "lease_owner",
    "lease_expires_at",
    "reply",
    "outcome_reason",
    "created_at",
    "started_at",
    "finished_at",
    "updated_at",
    "mode",
    "dry_run",
    "replay_tool_results",
]
TICKET_COLUMNS = [
    "id",
    "code",
    "external_id",
    "customer_email",
    "subject",
    "body",
    "source",
    "received_at",
]
SPAN_COLUMNS = [
    "run_id",
    "span_id",
    "parent_span_id",
    "step",
    "kind",
    "name",
    "status",
    "error_class",
    "error_message",
    "attempt",
    "model",
    "input",
    "output",
    "attributes",
    "input_tokens",
    "output_tokens",
    "cost",
    "started_at",
    "ended_at",
]


@dataclass
class Seeded:
    runs: int = 0
    spans: int = 0


def _pick(rng: random.Random, weighted: list[tuple[str, float]]) -> str:
    return rng.choices([v for v, _ in weighted], weights=[w for _, w in weighted])[0]


def _span_rows(rng: random.Random, run: dict, model: str) -> Iterator[dict]:
    """The spans of one run, as column dicts, in start order."""
    root_id = run["trace_id"][:16]
    t = run["started_at"]
    status = run["status"]
    final = run["finished_at"] is not None
    failing = {
        Run.Status.FAILED: rng.choice(["terminal", "validation"]),
        Run.Status.ESCALATED: rng.choice(["policy", "budget", "terminal", "transient"]),
    }.get(status, "")
    rows: list[dict] = []
    totals = {"in": 0, "out": 0, "cost": Decimal(0)}

    def add(kind, name, *, ms, step, attempt=1, error_class="", error="", span_model="", **extra):
        nonlocal t
        started = t
        ended = started + timedelta(milliseconds=ms)
        rows.append(
            {
                "span_id": f"{rng.getrandbits(64):016x}",
                "parent_span_id": root_id,
                "step": step,
                "kind": kind,
                "name": name,
                "status": "error" if error_class else "ok",
                "error_class": error_class,
                "error_message": error,
                "attempt": attempt,
                "model": span_model,
                "input": extra.get("input"),
                "output": extra.get("output"),
                "attributes": extra.get("attributes", {}),
                "input_tokens": extra.get("input_tokens", 0),
                "output_tokens": extra.get("output_tokens", 0),
                "cost": extra.get("cost", Decimal(0)),
                "started_at": started,
                "ended_at": ended,
            }
        )
        t = ended + timedelta(milliseconds=rng.randint(1, 20))

    add(
        "triage",
        "triage",
        ms=rng.randint(5, 40),
        step=0,
        span_model="claude-haiku-4-5",
        input={"subject": run["subject"]},
        output={"route": model},
    )
    steps = rng.choice([2, 3, 3, 3, 3, 4, 4])
    for step in range(1, steps + 1):
        attempts = 2 if rng.random() < 0.08 else 1
        for attempt in range(1, attempts + 1):
            if attempt < attempts:
                add(
                    "model",
                    "messages.create",
                    ms=rng.randint(200, 3000),
                    step=step,
                    attempt=attempt,
                    error_class="transient",
                    span_model=model,
                    error="APIStatusError: 529 overloaded",
                    attributes={"code": "overloaded"},
                )
                continue
            tokens_in, tokens_out = rng.randint(600, 4000), rng.randint(40, 600)
            price_in, price_out = PRICES[model]
            cost = (price_in * tokens_in + price_out * tokens_out) / Decimal(1_000_000)
            totals["in"] += tokens_in
            totals["out"] += tokens_out
            totals["cost"] += cost
            add(
                "model",
                "messages.create",
                ms=rng.randint(400, 6000),
                step=step,
                attempt=attempt,
                span_model=model,
                input_tokens=tokens_in,
                output_tokens=tokens_out,
                cost=cost,
                input={"messages": [{"role": "user", "content": run["subject"]}]},
                output={
                    "content": [{"type": "text", "text": "Let me check that order."}],
                    "stop_reason": "tool_use",
                },
                attributes={"stop_reason": "tool_use"},
            )
        if step == steps:
            break
        tool = TOOLS[min(step - 1, 3)] if rng.random() < 0.8 else rng.choice(TOOLS)
        last = step == steps - 1
        validation = failing == "validation" and last
        add(
            "validate",
            tool,
            ms=rng.randint(1, 15),
            step=step,
            error_class="validation" if validation else "",
            error="order_id: no order ORD-99999" if validation else "",
            input={"input": {"order_id": f"ORD-{rng.randint(10000, 99999)}"}},
            output={"errors": ["no such order"]} if validation else {"resolved": {}},
            attributes={"tool": tool},
        )
        if validation:
            continue
        if tool in ("issue_refund", "send_reply"):
            blocked = failing in ("policy", "budget") and last
            add(
                "policy",
                tool,
                ms=rng.randint(1, 5),
                step=step,
                error_class=failing if blocked else "",
                error="refund above the autonomy limit" if blocked else "",
                output={"verdict": "block" if blocked else "auto"},
            )
            if blocked:
                continue
        retried = rng.random() < 0.05 or (failing == "transient" and last)
        if retried:
            add(
                "tool",
                tool,
                ms=rng.randint(1000, 10000),
                step=step,
                attempt=1,
                error_class="transient",
                error="GatewayTimeout: no answer after 10s",
                attributes={"code": "timeout"},
            )
        broken = failing == "terminal" and last
        add(
            "tool",
            tool,
            ms=rng.randint(20, 1500),
            step=step,
            attempt=2 if retried else 1,
            error_class="terminal" if broken else "",
            error="CardDeclined: the issuer refused the refund" if broken else "",
            input={"order_id": "ORD-10023"},
            output={"error": {"code": "card_declined"}} if broken else {"status": "ok"},
        )
    run["input_tokens"], run["output_tokens"], run["cost"] = (
        totals["in"],
        totals["out"],
        totals["cost"],
    )
    if final:
        run["finished_at"] = t
    root = {
        "span_id": root_id,
        "parent_span_id": "",
        "step": 0,
        "kind": "run",
        "name": "run",
        "status": ("ok" if status == Run.Status.RESOLVED else "error") if final else "started",
        "error_class": failing if final else "",
        "error_message": "",
        "attempt": 1,
        "model": "",
        "input": {"subject": run["subject"]},
        "output": {"status": status} if final else None,
        "attributes": {},
        "input_tokens": totals["in"],
        "output_tokens": totals["out"],
        "cost": totals["cost"],
        "started_at": run["started_at"],
        "ended_at": t if final else None,
    }
    if not final:
        rows[-1]["status"], rows[-1]["ended_at"] = "started", None
    yield root
    yield from rows


def _reserve_ids(table: str, count: int) -> list[int]:
    """Ids from the table's own sequence, so later inserts never collide with them."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT nextval(pg_get_serial_sequence('{table}', 'id')) "  # noqa: S608
            "FROM generate_series(1, %s)",
            [count],
        )
        return [row[0] for row in cursor.fetchall()]


def _copy(table: str, columns: list[str], rows: list[dict]) -> None:
    json_columns = {
        "tool_results",
        "triage",
        "input",
        "output",
        "attributes",
        "replay_tool_results",
    }
    with connection.cursor() as cursor:
        sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
        with cursor.cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row(
                    [
                        (json.dumps(row[c]) if row[c] is not None else None)
                        if c in json_columns
                        else row[c]
                        for c in columns
                    ]
                )


def traces_seed(
    *,
    runs: int,
    days: int = 365,
    batch: int = 5000,
    seed: int = 1,
    out: io.TextIOBase | None = None,
) -> Seeded:
    """Insert `runs` runs (about ten spans each) spread over the last `days` days."""
    start_n = traces_seeded_count()
    # Same seed and same starting point, same rows; a top-up never repeats a code.
    rng = random.Random(seed * 1_000_003 + start_n)  # noqa: S311  (synthetic data)
    now = timezone.now()
    postgres = connection.vendor == "postgresql"
    done = Seeded()
    while done.runs < runs:
        size = min(batch, runs - done.runs)
        ticket_ids = _reserve_ids("agentops_ticket", size) if postgres else [None] * size
        run_ids = _reserve_ids("agentops_run", size) if postgres else [None] * size
        tickets, run_rows, span_rows = [], [], []
        for i in range(size):
            n = start_n + done.runs + i
            created = now - timedelta(seconds=rng.uniform(0, days * 86400))
            status = _pick(rng, STATUSES)
            model = _pick(rng, MODELS)
            subject = rng.choice(
                [
                    "Refund for a broken blender",
                    "Where is my parcel?",
                    "Wrong size delivered",
                    "Charged twice",
                    "Cancel my order",
                ]
            )
            ticket = {
                "id": ticket_ids[i],
                "code": uuid.UUID(int=rng.getrandbits(128), version=4),
                "external_id": f"{SEED_PREFIX}{n}",
                "customer_email": f"customer{rng.randint(1, 20000)}@example.com",
                "subject": subject,
                "body": "Synthetic ticket for the trace benchmark.",
                "source": Ticket.Source.COMMAND,
                "received_at": created,
            }
            started = None if status == Run.Status.QUEUED else created + timedelta(seconds=1)
            run = {
                "id": run_ids[i],
                "code": uuid.UUID(int=rng.getrandbits(128), version=4),
                "ticket_id": ticket_ids[i],
                "status": status,
                "model": model,
                "trace_id": f"{rng.getrandbits(128):032x}",
                "tool_results": [],
                "triage": {},
                "step_count": 0,
                "model_calls": 0,
                "input_tokens": 0,
                "output_tokens": 0,
                "cost": Decimal(0),
                "lease_owner": "",
                "lease_expires_at": None,
                "reply": "",
                "outcome_reason": "",
                "created_at": created,
                "started_at": started,
                "finished_at": True if status in Run.FINAL_STATUSES else None,
                "updated_at": created,
                # Seeded runs are production's; the replay columns keep their defaults.
                "mode": Run.Mode.PRODUCTION,
                "dry_run": False,
                "replay_tool_results": {},
                "subject": subject,
            }
            spans = list(_span_rows(rng, run, model)) if started else []
            run["finished_at"] = run["finished_at"] if run["finished_at"] is not True else None
            run["step_count"] = sum(1 for s in spans if s["kind"] in ("model", "tool", "validate"))
            run["model_calls"] = sum(
                1 for s in spans if s["kind"] == "model" and not s["error_class"]
            )
            for span in spans:
                span["run_id"] = run_ids[i]
            tickets.append(ticket)
            run_rows.append(run)
            span_rows.append(spans)
        with transaction.atomic():
            if postgres:
                _copy("agentops_ticket", TICKET_COLUMNS, tickets)
                _copy("agentops_run", RUN_COLUMNS, run_rows)
                _copy("traces_span", SPAN_COLUMNS, [s for spans in span_rows for s in spans])
            else:
                _bulk_create(tickets, run_rows, span_rows)
        done.runs += size
        done.spans += sum(len(s) for s in span_rows)
        if out is not None:
            out.write(f"  {done.runs} runs, {done.spans} spans\n")
    if postgres:
        with connection.cursor() as cursor:
            # VACUUM too: it sets the visibility map, so index-only scans need no heap.
            for table in ("agentops_ticket", "agentops_run", "traces_span"):
                cursor.execute(f"VACUUM ANALYZE {table}")
    return done


def _bulk_create(tickets: list[dict], run_rows: list[dict], span_rows: list[list[dict]]) -> None:
    """The portable path (SQLite): the ORM's bulk_create, which returns ids there."""
    made = Ticket.objects.bulk_create(
        [Ticket(**{k: v for k, v in t.items() if k != "id"}) for t in tickets]
    )
    run_fields = {f.attname for f in Run._meta.concrete_fields} - {"id"}
    runs = Run.objects.bulk_create(
        [
            Run(**{k: v for k, v in r.items() if k in run_fields and k != "ticket_id"}, ticket=t)
            for r, t in zip(run_rows, made, strict=True)
        ]
    )
    Span.objects.bulk_create(
        [
            Span(**{k: v for k, v in s.items() if k != "run_id"}, run=run)
            for run, spans in zip(runs, span_rows, strict=True)
            for s in spans
        ],
        batch_size=500,
    )


def traces_seeded_count() -> int:
    return Ticket.objects.filter(external_id__startswith=SEED_PREFIX).count()


def traces_seed_clear() -> int:
    """Delete the seeded tickets, their runs and spans. Returns how many runs went."""
    runs = Run.objects.filter(ticket__external_id__startswith=SEED_PREFIX)
    with transaction.atomic():
        Span.objects.filter(run__in=runs).delete()
        count, _ = runs.delete()
        Ticket.objects.filter(external_id__startswith=SEED_PREFIX).delete()
    return count
