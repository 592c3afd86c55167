"""manage.py seed_demo: the demo shop, its staff logins and its tickets. Safe to run twice."""

from django.core.management.base import BaseCommand

from agentops.shop.demo import DEMO_PASSWORD, USERS, demo_seed


class Command(BaseCommand):
    help = (
        "Seed the demo: staff users (lead, finance, admin), the default risk policy, "
        "customers, orders, past refunds (in the shop and at the simulated provider) and "
        "the demo tickets, whose runs are enqueued for the worker. Idempotent: a second "
        "run creates nothing and submits no ticket twice; it resets the demo passwords."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--no-tickets",
            action="store_true",
            help="seed the shop and the users only, submit no ticket",
        )
        parser.add_argument(
            "--password",
            default=DEMO_PASSWORD,
            help=f"password of the demo users (default: {DEMO_PASSWORD})",
        )

    def handle(self, *args, no_tickets: bool, password: str, **options):
        report = demo_seed(password=password, tickets=not no_tickets)

        self.stdout.write(
            f"created {report.users} users, {report.policies} risk policies, "
            f"{report.customers} customers, {report.orders} orders, "
            f"{report.refunds} past refunds ({report.provider_refunds} at the provider), "
            f"{report.faults} scripted faults, {report.tickets} tickets"
        )
        if not report.created_anything:
            self.stdout.write("the demo was already seeded; nothing new")

        rows = [("login", "password", "role")]
        rows += [(username, password, role) for username, role, *_ in USERS]
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        self.stdout.write("")
        self.stdout.write("Demo logins:")
        for i, row in enumerate(rows):
            self.stdout.write(
                "  "
                + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            )
            if i == 0:
                self.stdout.write("  " + "  ".join("-" * w for w in widths))
