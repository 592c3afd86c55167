"""The chaos run: tickets through real workers that are killed while they work.

`manage.py chaos` starts worker processes, feeds them tickets (refunds that go
through, refunds that wait for a person, questions, wrong order numbers), kills a
random worker with SIGKILL every few seconds and starts a replacement, runs the
sweeper so lost work is found, decides the approvals as a person would, and waits
for every run to end or park. Then it counts, from the outside:

- lost: runs that never reached a final or awaiting state before the deadline;
- duplicate refunds: counted in the provider's own records (more than one refund
  for one ticket and order), not in our ledger;
- silent failures: a sent reply that claims a refund the provider does not hold,
  or names an amount the provider did not refund. Read from the reply text and
  the provider's records only, so a ledger that lies cannot hide one.

A kill is one of two kinds, chosen at random: the worker's pool process only (the
worker re-queues its task: acks_late + reject_on_worker_lost, i.e. a redelivery),
or the whole worker (its unacknowledged message stays with the broker for the
visibility timeout, an hour: the task is lost, and only the sweeper finds the run).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Sum
from django.utils import timezone

from agentops.bench.runner import (
    PRICED_ENV,
    ROOT,
    database_url,
    price_like_production,
    worker_argv,
)
from agentops.models import Run, Ticket
from agentops.runtime.grounding import claimed_refund_sentences
from agentops.runtime.interrupted import INTERRUPTED
from agentops.shop.models import Customer, Order
from agentops.simgateway.models import ProviderRefund
from approvals.models import PendingAction
from approvals.services import ActionAlreadyDecided
from traces.models import Span
from traces.payloads import span_unreadable

WAITING = (Run.Status.QUEUED, Run.Status.RUNNING)
SETTLED = (*Run.FINAL_STATUSES, Run.Status.AWAITING_APPROVAL)
_AMOUNT = re.compile(r"[$€£]\s?(\d[\d,]*(?:\.\d{1,2})?)")


@dataclass(frozen=True)
class ChaosConfig:
    tickets: int = 1000
    workers: int = 3
    kill_every: float = 5.0  # seconds between kills; 0: no kills
    timeout_after_commit: float = 0.04
    p429: float = 0.0
    p500: float = 0.0
    legacy_provider: bool = False
    seed: int = 1
    lease_seconds: int = 10  # short, so a dead worker's run is taken over soon
    stale_seconds: int = 20  # queued this long without a worker: the message was lost
    sweep_every: float = 2.0
    deadline: float = 1800.0
    decide_approvals: bool = True
    model_latency_ms: int = 20
    in_flight: int = 0  # runs queued or running at a time; 0: four per worker

    @property
    def window(self) -> int:
        return self.in_flight or 4 * self.workers


@dataclass
class ChaosReport:
    tickets: int = 0
    resolved: int = 0
    escalated: int = 0
    awaiting_approval: int = 0
    failed: int = 0
    lost: int = 0
    duplicate_refunds: int = 0
    silent_failures: int = 0
    retries: int = 0
    wall_seconds: float = 0.0
    kills: Counter = field(default_factory=Counter)
    interrupted_steps: int = 0
    swept: int = 0
    decisions: Counter = field(default_factory=Counter)
    provider_refunds: int = 0
    silent_examples: list[str] = field(default_factory=list)
    # What the runs cost, and what the budget's day counter recorded meanwhile: the same
    # transactions write both, so a killed worker may leave neither, never one alone.
    runs_cost: Decimal = Decimal(0)
    spend_recorded: Decimal = Decimal(0)
    # Spans whose input or output points at what their run does not hold (a turn, a
    # ledger row, a tool result): each is written with what it points at, so a killed
    # worker may leave neither, never the pointer alone.
    unreadable_spans: int = 0
    unreadable_examples: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return (
            self.lost == 0
            and self.duplicate_refunds == 0
            and self.silent_failures == 0
            and self.spend_recorded == self.runs_cost
            and self.unreadable_spans == 0
        )

    def table(self) -> str:
        head = [
            "tickets",
            "resolved",
            "escalated",
            "awaiting approval",
            "failed",
            "lost",
            "duplicate refunds",
            "silent failures",
            "retries",
            "wall time",
        ]
        row = [
            self.tickets,
            self.resolved,
            self.escalated,
            self.awaiting_approval,
            self.failed,
            self.lost,
            self.duplicate_refunds,
            self.silent_failures,
            self.retries,
            f"{self.wall_seconds:.1f} s",
        ]
        return "\n".join(
            [
                "| " + " | ".join(head) + " |",
                "|" + "|".join(" ---: " for _ in head) + "|",
                "| " + " | ".join(str(v) for v in row) + " |",
            ]
        )


# --- worker processes -------------------------------------------------------------


class ChaosWorker:
    """One Celery worker (a main process and one pool process) that can be killed.

    The benchmark's Workers is one main process with N pool processes; the chaos
    run needs N workers that die and are replaced one at a time, each in its own
    process group so a kill takes the whole worker.
    """

    def __init__(self, *, name: str, queue: str, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.queue = queue
        self.env = env
        self.log = log_dir / f"{name}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            worker_argv(queue=self.queue, concurrency=1, node=f"{self.name}@%h"),
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": database_url(), **self.env},
            stdout=self.log.open("a"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a kill takes main and pool
        )

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def pool_processes(self) -> list[int]:
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(p) for p in path.read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            return []

    def kill_pool_process(self) -> bool:
        """SIGKILL the pool process only; the worker re-queues its task and forks another."""
        for pid in self.pool_processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            return True
        return False

    def kill(self) -> None:
        """SIGKILL the whole worker: its unacknowledged message stays with the broker."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if not self.alive:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()


def worker_env(config: ChaosConfig, index: int) -> dict[str, str]:
    return {
        "RUN_LEASE_SECONDS": str(config.lease_seconds),
        "RUN_STALE_SECONDS": str(config.stale_seconds),
        "GATEWAY_TIMEOUT_AFTER_COMMIT": str(config.timeout_after_commit),
        "GATEWAY_RATE_LIMIT": str(config.p429),
        "GATEWAY_SERVER_ERROR": str(config.p500),
        "GATEWAY_LEGACY": "true" if config.legacy_provider else "false",
        "GATEWAY_FAULT_SEED": str(config.seed * 1000 + index),
        "GATEWAY_LATENCY_MS": "0",
        "OFFLINE_MODEL_LATENCY_MS": str(config.model_latency_ms),
        "RETRY_BASE_DELAY_SECONDS": "0.02",
        "RETRY_MAX_DELAY_SECONDS": "0.5",
        "EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend",
        "LOG_LEVEL": "WARNING",
        "CRASH_POINT": "",
        # Calls cost money as in production (chaos_run prices the offline model).
        **PRICED_ENV,
    }


# --- tickets ----------------------------------------------------------------------


@dataclass(frozen=True)
class ChaosTicket:
    external_id: str
    email: str
    subject: str
    body: str


def tickets_seed(config: ChaosConfig, *, tag: str) -> list[ChaosTicket]:
    """Orders in the shop and the tickets that will be submitted about them.

    A mix like the demo's: partial refunds under the approval threshold (so a
    provider that pays twice could really pay twice), full refunds, refunds that
    wait for a person, a tracking number instead of an order id, questions, and
    order numbers that do not exist.
    """
    rng = random.Random(config.seed)
    now = timezone.now()
    first = 7_000_000_000 + Order.objects.count()
    kinds = rng.choices(
        ["partial", "full", "approval", "tracking", "question", "unknown"],
        weights=[55, 10, 12, 8, 8, 7],
        k=config.tickets,
    )
    customers = Customer.objects.bulk_create(
        [
            Customer(email=f"{tag}-{i}@chaos.example", name=f"Chaos {i}")
            for i in range(config.tickets)
        ]
    )
    orders = []
    for i, (kind, customer) in enumerate(zip(kinds, customers, strict=True)):
        total = rng.randrange(6_000, 15_000, 100) if kind == "approval" else 0
        total = total or rng.randrange(2_000, 9_900, 100)
        orders.append(
            Order(
                order_id=f"ORD-{first + i}",
                customer=customer,
                total_cents=total,
                currency="USD",
                status=Order.Status.DELIVERED,
                placed_at=now - timedelta(days=6),
                delivered_at=now - timedelta(days=2),
                tracking_number=f"1ZCH{(first + i) % 10**14:014d}",
                payment_ref=f"pi_chaos_{tag}_{i}",
            )
        )
    Order.objects.bulk_create(orders)

    tickets = []
    for i, (kind, order) in enumerate(zip(kinds, orders, strict=True)):
        part = rng.randrange(500, min(order.total_cents - 500, 4_500) + 1, 50)
        dollars = f"${part // 100}.{part % 100:02d}"
        subject, body = {
            "partial": (
                "Damaged item",
                f"Part of order {order.order_id} arrived damaged. Please refund {dollars} for it.",
            ),
            "full": ("Broken", f"My order {order.order_id} arrived broken. Please refund it."),
            "approval": (
                "Refund please",
                f"I want my money back for order {order.order_id}; it never worked. "
                "Please refund it.",
            ),
            "tracking": (
                "Crushed parcel",
                f"My parcel {order.tracking_number} arrived crushed. Please refund {dollars}.",
            ),
            "question": (
                "Where is it?",
                f"When will order {order.order_id} arrive? I ordered last week.",
            ),
            "unknown": (
                "Refund",
                f"Please refund order ORD-{9_900_000_000 + i}, it never came.",
            ),
        }[kind]
        tickets.append(
            ChaosTicket(
                external_id=f"{tag}-{i}", email=order.customer.email, subject=subject, body=body
            )
        )
    return tickets


# --- the run ----------------------------------------------------------------------


def _route_runs_to(queue: str) -> Callable[[], None]:
    """Send the run tasks this process enqueues to the chaos workers' queue."""
    from agentops.celery import app

    before = app.conf.task_routes

    def apply(routes) -> None:
        app.conf.task_routes = routes
        # Celery caches its routing table and router on first send; rebuild both.
        app.amqp.flush_routes()
        app.amqp.__dict__.pop("router", None)

    apply({"agentops.tasks.*": {"queue": queue}})
    return lambda: apply(before)


def _approvers() -> tuple:
    """Two people who may decide anything (four-eyes refunds need two)."""
    User = get_user_model()
    people = []
    for name in ("chaos-approver-1", "chaos-approver-2"):
        user, created = User.objects.get_or_create(
            username=name, defaults={"is_superuser": True, "is_staff": True}
        )
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        people.append(user)
    return tuple(people)


def _decide(pending: PendingAction, approvers: tuple, decisions: Counter) -> None:
    """A person's decision: most refunds approved, one in five rejected."""
    from approvals.services import action_approve, action_reject

    try:
        if pending.run_id % 5 == 0:
            action_reject(
                action=pending, actor=approvers[0], reason="Chaos run: rejected on purpose."
            )
            decisions["rejected"] += 1
            return
        action = action_approve(action=pending, actor=approvers[0])
        if action.status == PendingAction.Status.PENDING:
            action_approve(action=action, actor=approvers[1])
        decisions["approved"] += 1
    except ActionAlreadyDecided:
        pass


def chaos_run(config: ChaosConfig, *, out: Callable[[str], None] = print) -> ChaosReport:
    from agentops.runtime.sweeper import runs_sweep_stale
    from agentops.services import ticket_submit

    rng = random.Random(config.seed)
    tag = f"chaos{int(time.time())}{rng.randrange(1000):03d}"
    queue = f"chaos-{tag}"
    log_dir = Path(settings.VAR_DIR) / "chaos" / tag
    log_dir.mkdir(parents=True, exist_ok=True)
    report = ChaosReport(tickets=config.tickets)
    out(price_like_production())
    spent_before = _spend_recorded()
    tickets = tickets_seed(config, tag=tag)
    approvers = _approvers()
    ours = Run.objects.filter(ticket__external_id__startswith=f"{tag}-")
    out(f"seeded {len(tickets)} tickets ({tag}); worker logs in {log_dir}")

    restore_routes = _route_runs_to(queue)
    # The sweeper logs each re-enqueue; the table counts them instead.
    sweeper_log = logging.getLogger("agentops.runtime.sweeper")
    sweeper_level = sweeper_log.level
    sweeper_log.setLevel(logging.WARNING)
    stale_before = settings.RUN_STALE_SECONDS
    settings.RUN_STALE_SECONDS = config.stale_seconds  # the sweeper reads it here
    workers: list[ChaosWorker] = []
    serial = 0

    def start_worker() -> ChaosWorker:
        nonlocal serial
        serial += 1
        worker = ChaosWorker(
            name=f"{queue}-w{serial}",
            queue=queue,
            env=worker_env(config, serial),
            log_dir=log_dir,
        )
        worker.start()
        workers.append(worker)
        return worker

    try:
        for _ in range(config.workers):
            start_worker()
        started = time.monotonic()
        next_kill = started + config.kill_every if config.kill_every > 0 else float("inf")
        next_sweep = started + config.sweep_every
        next_note = started + 10
        submitted = 0
        while True:
            now = time.monotonic()
            if now - started > config.deadline:
                out(f"deadline of {config.deadline:.0f} s reached")
                break
            waiting = ours.filter(status__in=WAITING).count()
            while submitted < len(tickets) and waiting < config.window:
                t = tickets[submitted]
                ticket_submit(
                    customer_email=t.email,
                    subject=t.subject,
                    body=t.body,
                    external_id=t.external_id,
                    source=Ticket.Source.COMMAND,
                )
                submitted += 1
                waiting += 1
            if config.decide_approvals:
                for pending in PendingAction.objects.filter(
                    status=PendingAction.Status.PENDING, run__in=ours
                ):
                    _decide(pending, approvers, report.decisions)
            if now >= next_sweep:
                report.swept += len(runs_sweep_stale())
                next_sweep = now + config.sweep_every
            if now >= next_kill:
                _kill_one(rng, [w for w in workers if w.alive], report, start_worker)
                next_kill = now + config.kill_every
            if now >= next_note:
                done = ours.filter(status__in=SETTLED).count()
                out(f"  {now - started:5.0f} s: {submitted} submitted, {done} settled")
                next_note = now + 10
            if (
                submitted == len(tickets)
                and not ours.filter(status__in=WAITING).exists()
                and not (
                    config.decide_approvals and ours.filter(status=Run.Status.AWAITING_APPROVAL)
                ).exists()
            ):
                break
            time.sleep(0.25)
        report.wall_seconds = time.monotonic() - started
    finally:
        for worker in workers:
            worker.stop()
        settings.RUN_STALE_SECONDS = stale_before
        sweeper_log.setLevel(sweeper_level)
        restore_routes()

    _count(report, ours=ours, tag=tag, submitted=submitted)
    # Every day's: a run may cross midnight. Nothing else spends in the chaos database.
    report.spend_recorded = _spend_recorded() - spent_before
    report.runs_cost = ours.aggregate(cost=Sum("cost"))["cost"] or Decimal(0)
    return report


def _spend_recorded() -> Decimal:
    from agentops.routing.models import DailySpend

    return DailySpend.objects.aggregate(cost=Sum("cost"))["cost"] or Decimal(0)


def _kill_one(rng, alive: list[ChaosWorker], report: ChaosReport, start_worker) -> None:
    if not alive:
        return
    victim = rng.choice(alive)
    if rng.random() < 0.5 and victim.kill_pool_process():
        report.kills["pool process"] += 1
        return
    victim.kill()
    report.kills["whole worker"] += 1
    start_worker()


# --- counting, from the outside ----------------------------------------------------


def duplicate_refunds(*, tickets: list[str]) -> int:
    """Refunds beyond the first for one ticket and order, in the provider's own records."""
    per = Counter(
        (r.metadata.get("ticket"), r.metadata.get("order"))
        for r in ProviderRefund.objects.filter(metadata__ticket__in=tickets).only("metadata")
    )
    return sum(n - 1 for n in per.values() if n > 1)


def silent_failures(*, runs) -> list[str]:
    """Sent replies that claim a refund the provider does not hold, or another amount.

    Reads only the reply and the provider's records: the ledger is not asked.
    """
    found = []
    for run in runs.exclude(reply="").select_related("ticket").order_by("pk"):
        claims = claimed_refund_sentences(run.reply)
        if not claims:
            continue
        paid = [
            r.amount_cents
            for r in ProviderRefund.objects.filter(metadata__ticket=str(run.ticket.code))
        ]
        if not paid:
            found.append(f"run {run.pk}: says {claims[0]!r}; the provider holds no refund")
            continue
        named = {
            int(Decimal(m.group(1).replace(",", "")) * 100)
            for claim in claims
            for m in _AMOUNT.finditer(claim)
        }
        if named - set(paid) - {sum(paid)}:
            found.append(f"run {run.pk}: says {claims[0]!r}; the provider refunded {paid}")
    return found


def _count(report: ChaosReport, *, ours, tag: str, submitted: int) -> None:
    statuses = Counter(ours.values_list("status", flat=True))
    report.resolved = statuses[Run.Status.RESOLVED]
    report.escalated = statuses[Run.Status.ESCALATED]
    report.failed = statuses[Run.Status.FAILED]
    report.awaiting_approval = statuses[Run.Status.AWAITING_APPROVAL]
    # Never submitted counts as lost too: the deadline came first.
    report.lost = sum(statuses[s] for s in WAITING) + (report.tickets - submitted)
    codes = [str(c) for c in ours.values_list("ticket__code", flat=True)]
    report.duplicate_refunds = duplicate_refunds(tickets=codes)
    examples = silent_failures(runs=ours)
    report.silent_failures = len(examples)
    report.silent_examples = examples[:5]
    spans = Span.objects.filter(run__in=ours)
    report.retries = spans.filter(attempt__gt=1).count()
    # One takeover span per step a killed worker left unfinished (runtime.interrupted).
    report.interrupted_steps = spans.filter(kind=Span.Kind.POLICY, name=INTERRUPTED).count()
    report.provider_refunds = ProviderRefund.objects.filter(metadata__ticket__in=codes).count()
    unreadable = unreadable_spans(runs=ours)
    report.unreadable_spans = len(unreadable)
    report.unreadable_examples = unreadable[:5]


def unreadable_spans(*, runs) -> list[str]:
    """Spans of the runs whose input or output the trace cannot read (traces.payloads)."""
    found = []
    for run in runs.select_related("ticket").order_by("pk"):
        for span in run.spans.all():  # each with this run: its turns are read once
            found += [
                f"run {run.pk}: {span.kind} {span.name} {part}" for part in span_unreadable(span)
            ]
    return found


def describe(config: ChaosConfig) -> str:
    kills = f"a kill every {config.kill_every:g} s" if config.kill_every > 0 else "no kills"
    return (
        f"{config.tickets} tickets, {config.workers} workers, {kills}, "
        f"timeouts after commit {config.timeout_after_commit:.0%}, 429 {config.p429:.0%}, "
        f"500 {config.p500:.0%}, legacy provider {'on' if config.legacy_provider else 'off'}, "
        f"seed {config.seed}"
    )


def summary(report: ChaosReport) -> str:
    kills = ", ".join(f"{n} {kind}" for kind, n in sorted(report.kills.items())) or "none"
    decided = ", ".join(f"{n} {v}" for v, n in sorted(report.decisions.items())) or "none"
    return (
        f"kills: {sum(report.kills.values())} ({kills}); steps interrupted: "
        f"{report.interrupted_steps}; re-enqueued by the sweeper: {report.swept}; "
        f"approvals decided: {decided}; refunds at the provider: {report.provider_refunds}; "
        f"spend recorded ${report.spend_recorded} for runs that cost ${report.runs_cost}; "
        f"spans the trace cannot read: {report.unreadable_spans}"
    )


__all__ = [
    "ChaosConfig",
    "ChaosReport",
    "chaos_run",
    "describe",
    "duplicate_refunds",
    "silent_failures",
    "summary",
    "unreadable_spans",
]
