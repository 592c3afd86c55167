"""manage.py import_orders FILE.jsonl: load orders into the demo shop, all or nothing."""

import sys

from django.core.management.base import BaseCommand, CommandError

from agentops.shop.services import orders_import


class Command(BaseCommand):
    help = (
        "Import orders from a JSON lines file (one order per line: order_id, customer_email, "
        "customer_name, total_cents, currency, status, placed_at, delivered_at, "
        "tracking_number, payment_ref). If any line is bad, every bad line is reported "
        "and nothing is imported."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", metavar="FILE.jsonl", help="the file to import, or - for stdin")

    def handle(self, *args, path: str, **options):
        if path == "-":
            report = orders_import(lines=sys.stdin)
        else:
            try:
                with open(path, encoding="utf-8") as lines:
                    report = orders_import(lines=lines)
            except OSError as exc:
                raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from exc
            except UnicodeDecodeError as exc:
                raise CommandError(f"{path} is not UTF-8 text: {exc}") from exc

        if not report.ok:
            for error in report.errors:
                self.stderr.write(str(error))
            raise CommandError(f"{len(report.errors)} error(s) in {path}; nothing was imported")
        self.stdout.write(
            self.style.SUCCESS(
                f"imported {report.orders} orders for {report.customers} customers "
                f"({report.new_customers} new)"
            )
        )
