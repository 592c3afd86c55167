"""manage.py replay: exact replay, re-run and fork from the shell."""

import dataclasses
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from agentops.models import Effect, Run
from agentops.runtime import tools as tools_module
from agentops.runtime.errors import ToolError
from agentops.runtime.loop import run_advance
from agentops.services import ticket_submit
from agentops.shop.models import Customer, Order
from agentops.simgateway.models import ProviderRefund

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast(settings):
    settings.RETRY_BASE_DELAY_SECONDS = 0.001
    settings.OFFLINE_MODEL_LATENCY_MS = 0


@pytest.fixture
def original(db):
    """A production run (offline model) that refunded 25.00 and replied: 4 model steps."""
    customer = Customer.objects.create(email="ada@example.com", name="Ada")
    order = Order.objects.create(
        order_id="ORD-31001",
        customer=customer,
        total_cents=2500,
        currency="USD",
        status="delivered",
        placed_at=timezone.now(),
        delivered_at=timezone.now(),
        payment_ref="pi_cmd00000000000000031001",
    )
    run = ticket_submit(
        customer_email="ada@example.com", subject="Broken", body=f"refund {order.order_id}"
    ).run
    run_advance(run_id=run.pk, worker="test")
    run.refresh_from_db()
    assert run.status == Run.Status.RESOLVED, run.outcome_reason
    return run


def replay(*args) -> str:
    out = StringIO()
    call_command("replay", *args, stdout=out)
    return out.getvalue()


def test_an_exact_replay_prints_the_new_run_its_outcome_and_trace(original):
    out = replay(str(original.code))

    replayed = Run.objects.get(replay_of=original)
    assert f"run {replayed.code}" in out
    assert "status: resolved" in out
    assert "same path as the original: 4 model steps" in out
    assert f"trace: /runs/{replayed.code}/" in out


def test_an_exact_replay_after_a_fix_prints_the_divergence(original, monkeypatch):
    def stricter(resolved, ctx):
        raise ToolError("refunds are off", code="refunds_off")

    tool = tools_module.TOOLS["issue_refund"]
    monkeypatch.setitem(
        tools_module.TOOLS, "issue_refund", dataclasses.replace(tool, check=stricter)
    )

    out = replay(str(original.pk), "--mode", "exact")

    assert "status: failed" in out
    assert "outcome: Diverged from the recording at step 2 (tool result of issue_refund)" in out
    assert '"error": "refunds_off"' in out and '"step": 2' in out


def test_a_rerun_runs_here_and_repeats_no_side_effect(original):
    out = replay(str(original.code), "--mode", "rerun")

    rerun = Run.objects.get(replay_of=original)
    assert rerun.mode == Run.Mode.RERUN and "status: resolved" in out
    assert "returned from the ledger, not repeated (step 2): issue_refund" in out
    assert ProviderRefund.objects.count() == 1 and Effect.objects.count() == 2


def test_a_fork_is_a_dry_run_unless_live_is_asked(original):
    out = replay(str(original.code), "--mode", "fork", "--from-step", "2")

    fork = Run.objects.get(replay_of=original)
    assert "Fork from step 2 (dry run)" in out and fork.dry_run
    assert (
        'would have executed (step 2): issue_refund {"amount_cents": 2500, "currency": "USD", '
        '"order_id": "ORD-31001", "reason": "Customer request"}'
    ) in out
    assert ProviderRefund.objects.count() == 1 and not Effect.objects.filter(run=fork).exists()


def test_a_fork_with_live_executes_through_the_ledger(original):
    out = replay(str(original.code), "--mode", "fork", "--from-step", "2", "--live")

    fork = Run.objects.get(replay_of=original)
    assert "(live)" in out and not fork.dry_run
    assert ProviderRefund.objects.count() == 1  # the ledger returned the original's refund


def test_a_fork_takes_read_tool_results_from_a_file(original, tmp_path):
    given = tmp_path / "results.json"
    given.write_text('{"lookup_order": {"order_id": "ORD-31001", "status": "lost"}}')

    replay(str(original.code), "--mode", "fork", "--from-step", "1", "--tool-results", str(given))

    fork = Run.objects.get(replay_of=original)
    assert fork.replay_tool_results == {"lookup_order": {"order_id": "ORD-31001", "status": "lost"}}
    span = fork.spans.get(kind="tool", name="lookup_order")
    assert span.attributes["source"] == "given" and span.output["status"] == "lost"


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read"), ("{nope", "is not JSON"), ("[1]", "must hold a JSON object")],
)
def test_a_bad_tool_results_file_is_a_clear_error(original, tmp_path, content, message):
    path = tmp_path / "results.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(CommandError, match=message):
        replay(str(original.code), "--mode", "rerun", "--tool-results", str(path))
    assert not Run.objects.filter(replay_of=original).exists()


def test_enqueue_hands_a_rerun_to_the_workers(
    original, enqueued_runs, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        out = replay(str(original.code), "--mode", "rerun", "--enqueue")
    rerun = Run.objects.get(replay_of=original)
    assert enqueued_runs == [rerun.pk] and "status: queued" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mode", "fork"], "needs the step"),
        (["--mode", "fork", "--from-step", "12"], "not a model step"),
        (["--mode", "rerun", "--model", "gpt-9"], "ANTHROPIC_API_KEY"),
        (["--mode", "rerun", "--prompt-version", "v9"], "No prompt version named 'v9'"),
        (["--mode", "rerun", "--live"], "live applies to a fork"),
        (["--enqueue"], "--enqueue applies to rerun and fork"),
    ],
)
def test_bad_arguments_are_clear_errors_and_write_nothing(original, args, message):
    runs = Run.objects.count()
    with pytest.raises(CommandError, match=message):
        replay(str(original.code), *args)
    assert Run.objects.count() == runs


@pytest.mark.parametrize("run_id", ["nope", "999999", "00000000-0000-0000-0000-000000000000"])
def test_an_unknown_run_is_a_clear_error(db, run_id):
    with pytest.raises(CommandError, match="run"):
        replay(run_id)
    assert not Run.objects.exists()
