"""manage.py prune_traces --older-than 30d [--drop-payloads-older-than 7d]: trace retention."""

from __future__ import annotations

import re
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from traces.services import span_payloads_drop, spans_prune

_AGE = re.compile(r"^(\d+)([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_age(text: str) -> timedelta:
    """ "30d", "12h", "90m", "2w" → a timedelta."""
    match = _AGE.match(text.strip().lower())
    if not match or int(match.group(1)) == 0:
        raise CommandError(f"An age is a number and a unit (m, h, d, w), like 30d; got {text!r}")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


class Command(BaseCommand):
    help = (
        "Delete the spans of finished runs older than --older-than, in short batches; "
        "optionally drop the payloads of older successful runs, keeping their figures."
    )

    def add_arguments(self, parser):
        parser.add_argument("--older-than", help="delete spans of finished runs this old: 30d")
        parser.add_argument(
            "--drop-payloads-older-than",
            help="of resolved runs this old, drop span input/output but keep the figures: 7d",
        )
        parser.add_argument("--batch", type=int, default=5000, help="rows per transaction")
        parser.add_argument("--dry-run", action="store_true", help="count, change nothing")

    def handle(self, *args, **options):
        if not options["older_than"] and not options["drop_payloads_older_than"]:
            raise CommandError("Say what to prune: --older-than and/or --drop-payloads-older-than")
        if options["batch"] < 1:
            raise CommandError("--batch must be at least 1")
        now = timezone.now()
        verb = "Would" if options["dry_run"] else ""
        if options["drop_payloads_older_than"]:
            before = now - parse_age(options["drop_payloads_older_than"])
            changed = span_payloads_drop(
                before=before, batch=options["batch"], dry_run=options["dry_run"]
            )
            self.stdout.write(
                f"{verb + ' drop' if verb else 'Dropped'} the payloads of {changed} spans "
                f"of resolved runs created before {before:%Y-%m-%d %H:%M}."
            )
        if options["older_than"]:
            before = now - parse_age(options["older_than"])
            deleted = spans_prune(before=before, batch=options["batch"], dry_run=options["dry_run"])
            self.stdout.write(
                f"{verb + ' delete' if verb else 'Deleted'} {deleted} spans "
                f"of finished runs created before {before:%Y-%m-%d %H:%M}."
            )
