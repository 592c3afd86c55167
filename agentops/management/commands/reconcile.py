"""manage.py reconcile [--since YYYY-MM-DD]: the ledger against the provider's refunds."""

from __future__ import annotations

from datetime import UTC, datetime

from django.core.management.base import BaseCommand, CommandError, CommandParser

from agentops.integrations.errors import ProviderError
from agentops.reconciliation import reconciliation_report

SECTIONS = [
    ("provider_only", "In the provider, not in the ledger"),
    ("ledger_only", "In the ledger, not at the provider"),
    ("duplicates", "Duplicates (more than one refund per ticket and order)"),
]


def _date(value: str) -> datetime:
    try:
        day = datetime.strptime(value, "%Y-%m-%d")  # noqa: DTZ007  (made aware below)
    except ValueError as exc:
        raise CommandError(f"--since must be a date like 2026-01-31, got {value!r}") from exc
    return day.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = (
        "Compare the effect ledger's refunds with the payment provider's: matched, "
        "provider-only, ledger-only and duplicates. Exits 1 when they disagree."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", help="only refunds from this UTC date on (YYYY-MM-DD)")

    def handle(self, *args, since: str | None = None, **options) -> None:
        start = _date(since) if since else None
        try:
            report = reconciliation_report(since=start)
        except ProviderError as exc:
            raise CommandError(f"The payment provider could not be asked: {exc}") from exc
        counts = report.counts
        self.stdout.write(
            f"Reconciliation against {report.provider or 'the provider'}"
            + (f" since {start.date()}" if start else "")
            + ": "
            + ", ".join(f"{name.replace('_', '-')} {n}" for name, n in counts.items())
        )
        for name, title in SECTIONS:
            lines = getattr(report, name)
            if not lines:
                continue
            self.stdout.write(f"\n{title}:")
            for line in lines:
                self.stdout.write(
                    f"  {line.ledger_key or '(no ledger key)'}  order {line.order or '?'}  "
                    f"{line.amount_cents} {line.currency}  {', '.join(line.refund_ids) or '—'}"
                    f"  {line.note}"
                )
        if not report.clean:
            raise CommandError("The ledger and the provider disagree; see above.")
        self.stdout.write(self.style.SUCCESS("Clean: the ledger and the provider agree."))
