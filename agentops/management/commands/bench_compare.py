"""`manage.py bench_compare`: two trees of agentops measured alternated.

See agentops.bench.compare.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.migrations.executor import MigrationExecutor

from agentops.bench.compare import CompareError, compare, tree_of
from agentops.bench.runner import ROOT
from agentops.bench.where import walinspect_enable


class Command(BaseCommand):
    help = (
        "Measure two trees of agentops (a commit or a directory) against each other: "
        "tickets back to back in one process each, alternated."
    )

    def add_arguments(self, parser):
        parser.add_argument("--base", default="HEAD", help="a commit, or a directory")
        parser.add_argument(
            "--candidate", default=str(ROOT), help="a commit, or a directory (this checkout)"
        )
        parser.add_argument("--pairs", type=int, default=4, help="runs of each tree")
        parser.add_argument("--tickets", type=int, default=300, help="tickets a run")
        parser.add_argument("--warmup", type=int, default=20, help="tickets before each run's")

    def handle(self, *args, base, candidate, pairs, tickets, warmup, **opts):
        if connection.vendor != "postgresql":
            raise CommandError("The comparison runs on PostgreSQL: set DATABASE_URL.")
        if pairs < 1 or tickets < 1 or warmup < 0:
            raise CommandError("--pairs and --tickets must be at least 1, --warmup at least 0.")
        executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
        if executor.migration_plan(executor.loader.graph.leaf_nodes()):
            raise CommandError(
                "The database lacks some of this checkout's migrations: run `make bench-db`."
            )
        walinspect_missing = walinspect_enable()
        out = self.stdout.write
        try:
            with tree_of(base) as base_tree, tree_of(candidate) as candidate_tree:
                out(
                    f"bench-compare: {tickets} tickets a run after {warmup} warm-up, each run "
                    f"a process of its own, {pairs} runs of each tree alternated"
                )
                out(f"base:      {base_tree.label}")
                out(f"candidate: {candidate_tree.label}")
                if walinspect_missing:
                    out(f"WAL without full-page images: unavailable ({walinspect_missing})")
                summary = compare(
                    base_tree, candidate_tree, pairs=pairs, tickets=tickets, warmup=warmup, out=out
                )
        except CompareError as exc:
            raise CommandError(str(exc)) from None
        out("")
        for line in summary.lines():
            out(line)
