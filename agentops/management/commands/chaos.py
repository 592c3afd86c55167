"""`manage.py chaos`: tickets through real workers that are killed while they work; one table."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from agentops.chaos import ChaosConfig, chaos_run, describe, summary


def _fraction(value: str) -> float:
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise ValueError(value)
    return number


class Command(BaseCommand):
    help = (
        "Run tickets through real workers under faults (SIGKILLed workers, provider timeouts "
        "after commit, 429s, 500s, a provider that ignores idempotency keys) and print one "
        "table. Exits non-zero if a run was lost, a refund paid twice or a failure was silent."
    )

    def add_arguments(self, parser):
        parser.add_argument("--tickets", type=int, default=1000)
        parser.add_argument("--workers", type=int, default=3, help="worker processes")
        parser.add_argument(
            "--kill-every", type=float, default=5.0, help="seconds between SIGKILLs (0: none)"
        )
        parser.add_argument(
            "--timeout-after-commit",
            type=_fraction,
            default=0.04,
            help="probability a refund commits at the provider and then times out",
        )
        parser.add_argument("--p429", type=_fraction, default=0.0, help="probability of a 429")
        parser.add_argument("--p500", type=_fraction, default=0.0, help="probability of a 500")
        parser.add_argument(
            "--legacy-provider",
            action="store_true",
            help="the provider ignores idempotency keys (a repeated call pays again)",
        )
        parser.add_argument(
            "--model-latency-ms",
            type=int,
            default=20,
            help="the offline model's time per call: longer makes kills land mid-step more often",
        )
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument(
            "--deadline", type=float, default=1800.0, help="seconds before unfinished runs count"
        )
        parser.add_argument(
            "--leave-approvals",
            action="store_true",
            help="do not decide pending refunds; count them as awaiting approval",
        )

    def handle(self, *args, **opts):
        if opts["tickets"] < 1 or opts["workers"] < 1:
            raise CommandError("--tickets and --workers must be at least 1.")
        if not 0 <= opts["model_latency_ms"] <= 60_000:
            raise CommandError("--model-latency-ms must be between 0 and 60000.")
        if connection.vendor != "postgresql":
            raise CommandError("The chaos run needs PostgreSQL: set DATABASE_URL.")
        if settings.CELERY_BROKER_URL.startswith("filesystem"):
            raise CommandError("The chaos run needs a real broker: set CELERY_BROKER_URL.")
        config = ChaosConfig(
            tickets=opts["tickets"],
            workers=opts["workers"],
            kill_every=opts["kill_every"],
            timeout_after_commit=opts["timeout_after_commit"],
            p429=opts["p429"],
            p500=opts["p500"],
            legacy_provider=opts["legacy_provider"],
            seed=opts["seed"],
            model_latency_ms=opts["model_latency_ms"],
            deadline=opts["deadline"],
            decide_approvals=not opts["leave_approvals"],
        )
        out = self.stdout.write
        out(f"chaos: {describe(config)}")
        out(
            f"PostgreSQL {connection.pg_version // 10000}, "
            f"broker {settings.CELERY_BROKER_URL.split('://')[0]}"
        )
        report = chaos_run(config, out=out)
        out("")
        out(report.table())
        out("")
        out(summary(report))
        for example in report.silent_examples:
            out(f"silent failure: {example}")
        for example in report.unreadable_examples:
            out(f"span the trace cannot read: {example}")
        if not report.clean:
            raise CommandError(
                f"lost {report.lost}, duplicate refunds {report.duplicate_refunds}, "
                f"silent failures {report.silent_failures}, spend recorded "
                f"${report.spend_recorded} for runs that cost ${report.runs_cost}, "
                f"spans the trace cannot read {report.unreadable_spans}"
            )
