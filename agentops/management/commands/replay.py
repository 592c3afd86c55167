"""Replay a recorded run from the shell: exact replay, re-run or fork (agentops.replay)."""

import json
import uuid

from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from agentops.models import Run
from agentops.replay import ReplayError, replay_divergence, replay_start


class Command(BaseCommand):
    help = (
        "Replay a run. exact (default): the recorded responses and results through today's "
        "code, nothing live; prints where it diverges. rerun: a new live run of the ticket, "
        "side effects through the ledger. fork: the recording up to --from-step, live from "
        "there, side effects a dry run unless --live."
    )

    def add_arguments(self, parser):
        parser.add_argument("run_id", help="The run's code (UUID, as in /runs/<code>/) or its id")
        parser.add_argument("--mode", choices=["exact", "rerun", "fork"], default="exact")
        parser.add_argument(
            "--from-step", type=int, default=None, help="fork: the first model step that is live"
        )
        parser.add_argument("--model", default=None, help="rerun/fork: the model to use")
        parser.add_argument(
            "--prompt-version", default=None, help="rerun/fork: a prompt version's name"
        )
        parser.add_argument(
            "--live",
            action="store_true",
            help="fork: execute side effects for real (through the ledger) instead of a dry run",
        )
        parser.add_argument(
            "--tool-results",
            default=None,
            metavar="FILE.json",
            help="rerun/fork: results for read-only tools instead of calling them: "
            '{"lookup_order": {...}} or {"lookup_order:{\\"order_id\\":\\"ORD-1\\"}": {...}}; '
            "in a dry run also what a side effect would have returned",
        )
        parser.add_argument(
            "--enqueue",
            action="store_true",
            help="rerun/fork: hand the run to the Celery workers instead of running it here",
        )

    def handle(self, *args, run_id: str, mode: str, from_step, model, prompt_version, **opts):
        original = _find_run(run_id)
        if opts["enqueue"] and mode == "exact":
            raise CommandError("--enqueue applies to rerun and fork; an exact replay runs here.")
        if mode == "rerun":
            self.stdout.write(
                "Re-run: live model; side effects go through the ticket's ledger, so what the "
                "original did is returned, not repeated; anything new executes for real."
            )
        try:
            replayed = replay_start(
                original,
                mode=mode,
                from_step=from_step,
                model=model,
                prompt_version=prompt_version,
                live=opts["live"],
                tool_results=_read_tool_results(opts["tool_results"]),
                inline=not opts["enqueue"],
            )
        except ReplayError as exc:
            raise CommandError(str(exc)) from exc

        write = self.stdout.write
        what = {"exact": "Exact replay", "rerun": "Re-run", "fork": "Fork"}[mode]
        if mode == "fork":
            what += f" from step {from_step}" + (" (live)" if opts["live"] else " (dry run)")
        write(f"{what} of run {original.code}: run {replayed.code}")
        write(f"status: {replayed.status}")
        if replayed.outcome_reason:
            write(f"outcome: {replayed.outcome_reason}")
        divergence = replay_divergence(replayed)
        if divergence is not None:
            write("divergence: " + json.dumps(divergence, indent=2, default=str, sort_keys=True))
        elif mode == "exact" and replayed.is_final:
            write(
                f"same path as the original: {replayed.model_calls} model steps, "
                f"ended {replayed.status} like run {original.code}"
            )
        for span in replayed.spans.filter(kind="tool").order_by("started_at", "id"):
            attributes = span.attributes or {}
            args = json.dumps(span.input, default=str, sort_keys=True)
            if attributes.get("would_execute"):
                write(f"would have executed (step {span.step}): {span.name} {args}")
            elif attributes.get("replayed_from_ledger"):
                write(f"returned from the ledger, not repeated (step {span.step}): {span.name}")
        write(f"trace: {reverse('run_detail', args=[replayed.code])}")
        write(f"original: {reverse('run_detail', args=[original.code])}")


def _read_tool_results(path: str | None) -> dict | None:
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            given = json.load(f)
    except OSError as exc:
        raise CommandError(f"--tool-results: cannot read {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise CommandError(f"--tool-results: {path} is not JSON: {exc}") from exc
    if not isinstance(given, dict):
        raise CommandError(f"--tool-results: {path} must hold a JSON object.")
    return given


def _find_run(run_id: str) -> Run:
    run_id = run_id.strip()
    runs = Run.objects.select_related("ticket", "prompt_version")
    found = None
    if run_id.isdigit():
        found = runs.filter(pk=int(run_id)).first()
    else:
        try:
            code = uuid.UUID(run_id)
        except ValueError as exc:
            raise CommandError(
                f"{run_id!r} is not a run id: give the run's code (a UUID) or its number."
            ) from exc
        found = runs.filter(code=code).first()
    if found is None:
        raise CommandError(f"No run {run_id}.")
    return found
