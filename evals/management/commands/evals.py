"""Run the regression set in dry run; exit 1 if any case fails, so CI can gate a prompt change."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from agentops.models import PromptVersion
from evals.checks import call_text
from evals.models import RegressionCase
from evals.services import eval_run_execute

BAD_ARGUMENTS = 2
CELL_CHARS = 48


def _cell(text: str) -> str:
    return text if len(text) <= CELL_CHARS else text[: CELL_CHARS - 1] + "…"


def _expected(case: RegressionCase) -> str:
    parts = [call_text(c) for c in case.expected_tool_calls]
    parts += [f"no {tool}" for tool in case.forbidden_tools]
    if case.expected_status:
        parts.append(f"ends {case.expected_status}")
    return "; ".join(parts)


def _got(got: dict) -> str:
    if not got:
        return "(did not run)"
    parts = [call_text(c) for c in got.get("tool_calls", [])]
    parts.append(f"ends {got.get('status', '?')}")
    return "; ".join(parts)


class Command(BaseCommand):
    help = (
        "Run every active regression case in dry run and print case | expected | got | "
        "pass/fail | cost. Exit status 1 if any case fails, 2 on bad arguments."
    )

    def add_arguments(self, parser):
        parser.add_argument("--prompt-version", default="", help="a prompt version's name")
        parser.add_argument("--model", default="", help="the model to run the cases with")
        parser.add_argument(
            "--case", nargs="+", default=[], help="only these cases (id or code), active or not"
        )

    def handle(self, *args, prompt_version: str, model: str, case: list[str], **opts):
        version = None
        if prompt_version:
            version = PromptVersion.objects.filter(name=prompt_version).first()
            if version is None:
                known = ", ".join(PromptVersion.objects.values_list("name", flat=True)) or "none"
                raise CommandError(
                    f"--prompt-version: no version named {prompt_version!r} (known: {known})",
                    returncode=BAD_ARGUMENTS,
                )
        model = model.strip()
        if model and not model.startswith("offline") and not settings.ANTHROPIC_API_KEY:
            raise CommandError(
                f"--model {model}: there is no ANTHROPIC_API_KEY, only the offline model runs",
                returncode=BAD_ARGUMENTS,
            )
        cases = self._cases(case)
        if not cases:
            self.stderr.write("No active regression cases: nothing to run.")
            return
        eval_run = eval_run_execute(cases=cases, prompt_version=version, model=model)
        results = list(eval_run.results.select_related("case").order_by("case_id"))
        rows = [("case", "expected", "got", "result", "cost")]
        for r in results:
            rows.append(
                (
                    f"{r.case.pk} {r.case.name}",
                    _expected(r.case),
                    _got(r.got),
                    "pass" if r.passed else "FAIL",
                    f"${r.cost:.4f}",
                )
            )
        rows = [tuple(_cell(c) for c in row) for row in rows]
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        for n, row in enumerate(rows):
            self.stdout.write(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
            if n == 0:
                self.stdout.write("-+-".join("-" * w for w in widths))
        for r in results:
            for failure in r.failures:
                self.stdout.write(f"case {r.case.pk} ({r.case.name}): {failure}")
        self.stdout.write(
            f"{eval_run.passed} of {eval_run.cases} passed, {eval_run.failed} failed, "
            f"cost ${eval_run.cost:.4f} · eval {eval_run.code}"
        )
        if eval_run.failed:
            raise CommandError(f"{eval_run.failed} case(s) failed", returncode=1)

    def _cases(self, wanted: list[str]) -> list[RegressionCase]:
        if not wanted:
            return list(RegressionCase.objects.filter(active=True).order_by("pk"))
        found = []
        for value in wanted:
            lookup = {"pk": int(value)} if value.isdigit() else {"code": _uuid(value)}
            item = RegressionCase.objects.filter(**lookup).first()
            if item is None:
                raise CommandError(f"--case: no case {value!r}", returncode=BAD_ARGUMENTS)
            found.append(item)
        return found


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise CommandError(
            f"--case: {value!r} is neither a case id nor a code", returncode=BAD_ARGUMENTS
        ) from None
