"""manage.py seed_traces: synthetic runs and spans in bulk (COPY on PostgreSQL)."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from traces.seed import traces_seed, traces_seed_clear, traces_seeded_count


class Command(BaseCommand):
    help = "Insert synthetic runs (about ten spans each) for benchmarks: 100k runs by default."

    def add_arguments(self, parser):
        parser.add_argument("--runs", type=int, default=100_000)
        parser.add_argument("--days", type=int, default=365, help="spread over this many days")
        parser.add_argument("--batch", type=int, default=5_000)
        parser.add_argument(
            "--seed", type=int, default=1, help="random seed (same seed, same data)"
        )
        parser.add_argument("--clear", action="store_true", help="delete seeded rows first")
        parser.add_argument(
            "--top-up",
            action="store_true",
            help="only add what is missing to reach --runs seeded runs (for make bench-web)",
        )

    def handle(self, *args, **options):
        if options["runs"] < 0 or options["days"] < 1 or options["batch"] < 1:
            raise CommandError("--runs must be >= 0, --days and --batch >= 1")
        if options["clear"]:
            self.stdout.write(f"Cleared {traces_seed_clear()} seeded runs.")
        runs = options["runs"]
        if options["top_up"]:
            have = traces_seeded_count()
            runs = max(runs - have, 0)
            self.stdout.write(f"{have} seeded runs already; adding {runs}.")
        began = time.monotonic()
        done = traces_seed(
            runs=runs,
            days=options["days"],
            batch=options["batch"],
            seed=options["seed"],
            out=self.stdout,
        )
        seconds = time.monotonic() - began
        self.stdout.write(
            self.style.SUCCESS(
                f"Seeded {done.runs} runs and {done.spans} spans in {seconds:.1f} s."
            )
        )
