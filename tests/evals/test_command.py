"""manage.py evals: a table, and an exit status CI can gate on."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from agentops.models import PromptVersion
from evals.models import EvalResult, EvalRun, RegressionCase
from evals.services import case_create
from tests.evals.helpers import LOOKUP_OK, refund_conversation

pytestmark = pytest.mark.django_db


@pytest.fixture
def case(refund_run):
    return case_create(
        run=refund_run,
        user=None,
        name="Broken blender, full refund",
        expected_tool_calls=[{"tool": "issue_refund", "args": {"amount_cents": 1999}}],
        forbidden_tools=[],
        expected_status="resolved",
    )


def evals(*args) -> str:
    out = StringIO()
    call_command("evals", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_it_exits_zero_and_prints_the_table_when_every_case_passes(case, fake_engine):
    fake_engine.messages = refund_conversation(1999)

    output = evals()

    assert "case" in output.splitlines()[0] and "expected" in output.splitlines()[0]
    assert "pass" in output
    assert "1 of 1 passed, 0 failed" in output
    call = fake_engine.calls[0]
    assert (call["mode"], call["from_step"], call["live"], call["inline"]) == (
        "eval",
        1,
        False,
        True,
    )
    # The read tool's recorded answer is fed back, keyed by the call's signature.
    assert call["tool_results"] == {'lookup_order:{"order_id":"ORD-10023"}': LOOKUP_OK}
    result = EvalResult.objects.get()
    assert result.passed and result.run.dry_run


def test_it_exits_one_when_a_case_fails_and_says_why(case, fake_engine):
    fake_engine.messages = refund_conversation(999)

    out = StringIO()
    with pytest.raises(CommandError) as failed:
        call_command("evals", stdout=out, stderr=StringIO())

    assert failed.value.returncode == 1
    output = out.getvalue()
    assert "FAIL" in output
    assert "expected issue_refund(amount_cents=1999), not called" in output
    assert "0 of 1 passed, 1 failed" in output
    assert EvalRun.objects.get().failed == 1


def test_it_passes_the_prompt_version_and_the_model(case, fake_engine):
    version = PromptVersion.objects.create(name="v2", system_prompt="Be careful.")
    fake_engine.messages = refund_conversation(1999)

    evals("--prompt-version", "v2", "--model", "offline")

    call = fake_engine.calls[0]
    assert (call["prompt_version"], call["model"]) == (version, "offline")
    assert EvalRun.objects.get().prompt_version == version


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prompt-version", "nope"], "no version named 'nope'"),
        (["--case", "999"], "no case '999'"),
        (["--case", "zzz"], "neither a case id nor a code"),
        (["--model", "claude-x"], "there is no ANTHROPIC_API_KEY"),
    ],
)
def test_it_exits_two_on_bad_arguments(case, fake_engine, args, message):
    with pytest.raises(CommandError) as bad:
        evals(*args)
    assert bad.value.returncode == 2
    assert message in str(bad.value)
    assert fake_engine.calls == []
    assert not EvalRun.objects.exists()


def test_inactive_cases_are_skipped_unless_named(case, fake_engine, make_run):
    RegressionCase.objects.filter(pk=case.pk).update(active=False)
    assert evals() == ""
    assert fake_engine.calls == []

    fake_engine.messages = refund_conversation(1999)
    evals("--case", str(case.pk))
    assert len(fake_engine.calls) == 1


def test_a_case_that_cannot_run_fails_without_stopping_the_others(case, fake_engine, refund_run):
    broken = RegressionCase.objects.create(
        name="Source gone",
        source_run=None,
        customer_email="a@example.com",
        subject="s",
        body="b",
        expected_status="resolved",
    )
    fake_engine.messages = refund_conversation(1999)

    out = StringIO()
    with pytest.raises(CommandError):
        call_command("evals", stdout=out, stderr=StringIO())

    assert f"case {broken.pk} (Source gone): the case's source run was deleted" in out.getvalue()
    assert "1 of 2 passed" in out.getvalue()
    assert len(fake_engine.calls) == 1
