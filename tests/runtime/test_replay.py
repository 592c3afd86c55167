"""Replay, fork and re-run of recorded runs (agentops.replay), and prompt versions in the loop."""

import dataclasses

import pytest
from django.core import mail

from agentops.integrations.errors import ProviderRejected
from agentops.integrations.llm import ModelResponse
from agentops.models import Effect, PromptVersion, Run
from agentops.replay import ReplayError, replay_divergence, replay_start
from agentops.runtime import tools as tools_module
from agentops.runtime.errors import TERMINAL, ToolError
from agentops.simgateway.models import ProviderRefund, ScriptedFault
from approvals.models import PendingAction
from approvals.policy import APPROVAL, PolicyDecision, RuleResult
from approvals.services import action_approve, action_reject
from tests.runtime.conftest import text, tool_use
from tests.runtime.helpers import advance
from traces.models import Span
from traces.payloads import span_output, span_unreadable

pytestmark = pytest.mark.django_db


@pytest.fixture
def no_live_model(monkeypatch):
    """Call it once the original ran: from then on, asking for a live model is recorded."""
    calls = []

    def refuse(name):
        calls.append(name)
        raise AssertionError(f"a live model client was asked for: {name}")

    def forbid():
        monkeypatch.setattr("agentops.runtime.loop.get_model_client", refuse)
        monkeypatch.setattr("agentops.runtime.triage.get_model_client", refuse)
        return calls

    return forbid


def refunded_run(make_order, submit, cents=2500):
    """A production run (offline model) that looked the order up, refunded it and replied."""
    order = make_order(total_cents=cents)
    run = advance(submit(f"Please refund my order {order.order_id}, it arrived broken."))
    assert run.status == Run.Status.RESOLVED, run.outcome_reason
    return order, run


# --- exact replay ------------------------------------------------------------------------


def test_an_exact_replay_of_a_model_failure_reproduces_it_without_calling_anything(
    make_order, submit, scripted, monkeypatch
):
    order = make_order(total_cents=2500)
    scripted(
        [text("Looking it up."), tool_use("lookup_order", {"order_id": order.order_id})],
        ProviderRejected("prompt is too long", code="invalid_request_error"),
    )
    original = advance(submit(f"refund {order.order_id}"))
    assert original.status == Run.Status.FAILED
    assert "rejected" in original.outcome_reason

    def refuse(name):
        raise AssertionError("no live model in an exact replay")

    monkeypatch.setattr("agentops.runtime.loop.get_model_client", refuse)
    replayed = replay_start(original, mode="exact")

    assert replayed.mode == Run.Mode.EXACT and replayed.replay_of == original
    assert replayed.status == Run.Status.FAILED
    assert replayed.model_calls == original.model_calls == 1  # the failed call is not counted
    assert "prompt is too long" in replayed.outcome_reason
    assert replay_divergence(replayed) is None
    model_spans = replayed.spans.filter(kind="model", name="messages.create", status="ok")
    assert {s.attributes["source"] for s in model_spans} == {"recording"}
    assert replayed.cost == 0


def test_an_exact_replay_of_a_provider_failure_takes_the_recorded_path_and_executes_nothing(
    make_order, submit, no_live_model
):
    order = make_order(total_cents=3000)
    ScriptedFault.objects.create(payment_ref=order.payment_ref, kind="server_error", remaining=20)
    original = advance(submit(f"refund {order.order_id}"))
    assert original.status == Run.Status.ESCALATED, original.outcome_reason
    effects, sent = Effect.objects.count(), len(mail.outbox)
    live_calls = no_live_model()

    replayed = replay_start(original, mode="exact")

    assert replayed.status == Run.Status.ESCALATED
    assert replayed.outcome_reason == original.outcome_reason
    assert replay_divergence(replayed) is None
    assert Effect.objects.count() == effects and len(mail.outbox) == sent
    assert not ProviderRefund.objects.exists()
    assert live_calls == []
    refund = replayed.spans.get(kind="tool", name="issue_refund")
    assert refund.attributes["source"] == "recording" and refund.error_class == TERMINAL


def test_an_exact_replay_after_a_validation_fix_stops_at_the_divergence(
    make_order, submit, monkeypatch, no_live_model
):
    order, original = refunded_run(make_order, submit, cents=2500)
    refunds = ProviderRefund.objects.count()
    live_calls = no_live_model()

    # The fix: refunds above 20.00 are now refused by validation.
    def stricter(resolved, ctx):
        if resolved.args["amount_cents"] > 2000:
            raise ToolError("too much for this fix", code="over_fix_limit")

    tool = tools_module.TOOLS["issue_refund"]
    monkeypatch.setitem(
        tools_module.TOOLS, "issue_refund", dataclasses.replace(tool, check=stricter)
    )

    replayed = replay_start(original, mode="exact")

    divergence = replay_divergence(replayed)
    assert divergence is not None
    refund_step = original.spans.get(kind="tool", name="issue_refund").step
    assert divergence["step"] == refund_step == 2
    assert divergence["tool"] == "issue_refund"
    assert divergence["expected"]["is_error"] is False
    assert divergence["actual"] == {"is_error": True, "error": "over_fix_limit"}
    assert replayed.status == Run.Status.FAILED
    assert replayed.outcome_reason.startswith("Diverged from the recording at step 2")
    # It stopped there: no step after it, nothing executed, no model asked.
    assert replayed.model_calls == 2
    assert not replayed.spans.filter(step__gt=2).exists()
    assert ProviderRefund.objects.count() == refunds
    assert not Effect.objects.filter(run=replayed).exists()
    assert live_calls == []
    marked = replayed.spans.get(attributes__diverged=True)
    assert (marked.kind, marked.name, marked.error_message) == (
        "validate",
        "issue_refund",
        "too much for this fix",
    )


def test_an_exact_replay_stops_before_executing_what_the_original_never_ran(
    make_order, submit, scripted, monkeypatch, no_live_model
):
    order = make_order(total_cents=2500)
    claim = "I've issued a refund of $25.00 for your order."
    scripted(
        [text("Looking."), tool_use("lookup_order", {"order_id": order.order_id}, id="t1")],
        [text("Replying."), tool_use("send_reply", {"body": claim}, id="t2")],
    )
    original = advance(submit(f"refund {order.order_id}"))
    assert original.status == Run.Status.ESCALATED
    assert original.outcome_reason.startswith("Reply held for review")
    live_calls = no_live_model()

    # A change that lets the ungrounded reply through.
    monkeypatch.setattr("agentops.runtime.grounding.reply_hold_reason", lambda **kw: None)
    replayed = replay_start(original, mode="exact")

    divergence = replay_divergence(replayed)
    assert divergence["step"] == 2 and divergence["stage"] == "tool"
    assert divergence["tool"] == "send_reply" and divergence["tool_use_id"] == "t2"
    assert divergence["expected"] == "the original did not run this call"
    assert divergence["actual"] == {"would_execute": "send_reply", "arguments": {"body": claim}}
    assert len(mail.outbox) == 0 and not Effect.objects.exists()
    assert live_calls == []
    # The step's spans are kept, the last one marked where it departed.
    marked = replayed.spans.get(attributes__diverged=True)
    assert (marked.kind, marked.name, marked.step) == ("policy", "send_reply", 2)


def test_an_exact_replay_after_a_policy_change_names_the_step_and_asks_no_one(
    make_order, submit, monkeypatch, no_live_model
):
    order, original = refunded_run(make_order, submit, cents=2500)
    no_live_model()

    def needs_approval(*, tool, resolved, run):
        rule = RuleResult("new_rule", True, "every refund is reviewed now")
        return PolicyDecision(APPROVAL, (rule,))

    monkeypatch.setattr("agentops.runtime.loop.policy_evaluate_call", needs_approval)
    replayed = replay_start(original, mode="exact")

    divergence = replay_divergence(replayed)
    assert divergence["stage"] == "policy" and divergence["step"] == 2
    assert divergence["expected"] == {"outcome": "auto"}
    assert divergence["actual"] == {"outcome": "approval", "tripped": ["new_rule"]}
    assert not PendingAction.objects.exists()
    policy = replayed.spans.get(kind="policy", step=2)
    assert policy.attributes["diverged"] is True and policy.output["outcome"] == "approval"


def test_an_exact_replay_of_a_resolved_run_takes_the_same_path(make_order, submit, no_live_model):
    order, original = refunded_run(make_order, submit)
    live_calls = no_live_model()

    replayed = replay_start(original, mode="exact")

    assert replayed.status == Run.Status.RESOLVED, replayed.outcome_reason
    assert replay_divergence(replayed) is None
    assert replayed.messages == original.messages
    assert replayed.reply == original.reply
    assert len(mail.outbox) == 1  # the original's reply only
    assert live_calls == []


def test_an_exact_replay_uses_the_original_approval_and_asks_no_one(
    make_order, submit, support_lead, no_live_model
):
    order = make_order(total_cents=12900)
    original = advance(submit(f"I want a refund for {order.order_id}."))
    action_approve(action=PendingAction.objects.get(run=original), actor=support_lead)
    original = advance(original)
    assert original.status == Run.Status.RESOLVED, original.outcome_reason
    live_calls = no_live_model()

    replayed = replay_start(original, mode="exact")
    again = replay_start(replayed, mode="exact")  # a replay of a replay finds the same approval

    for run in (replayed, again):
        assert run.status == Run.Status.RESOLVED, run.outcome_reason
        assert replay_divergence(run) is None
        approval = run.spans.get(kind="approval")
        assert approval.output["status"] == "approved"
    assert PendingAction.objects.count() == 1
    assert ProviderRefund.objects.count() == 1
    assert live_calls == []
    root = again.spans.get(kind="run")
    assert root.attributes["replay_of"] == str(replayed.code)
    assert root.attributes["replay_mode"] == "exact"


def test_an_exact_replay_diverges_when_the_approver_lost_the_permission(
    make_order, submit, support_lead
):
    order = make_order(total_cents=12900)
    original = advance(submit(f"I want a refund for {order.order_id}."))
    action_approve(action=PendingAction.objects.get(run=original), actor=support_lead)
    original = advance(original)
    support_lead.user_permissions.clear()

    replayed = replay_start(original, mode="exact")

    divergence = replay_divergence(replayed)
    assert divergence["stage"] == "end" and divergence["step"] == 2
    assert divergence["expected"]["status"] == "resolved"
    assert divergence["actual"]["status"] == "escalated"
    assert "without the permission" in divergence["actual"]["reason"]


def test_an_exact_replay_of_a_ticket_the_autonomy_share_now_admits_diverges_at_triage(
    make_order, submit, settings
):
    settings.AUTONOMY_SHARE_PERCENT = 0
    original = advance(submit("Where is my parcel?"))
    assert original.status == Run.Status.ESCALATED and original.model_calls == 0
    settings.AUTONOMY_SHARE_PERCENT = 100

    replayed = replay_start(original, mode="exact")

    divergence = replay_divergence(replayed)
    assert (divergence["step"], divergence["stage"]) == (0, "triage")
    assert divergence["expected"]["ended"]["status"] == "escalated"
    assert replayed.status == Run.Status.FAILED


def test_an_exact_replay_of_a_ticket_outside_the_autonomy_share_reproduces_it(submit, settings):
    settings.AUTONOMY_SHARE_PERCENT = 0
    original = advance(submit("Where is my parcel?"))

    replayed = replay_start(original, mode="exact")

    assert replayed.status == Run.Status.ESCALATED
    assert replayed.outcome_reason == original.outcome_reason
    assert replay_divergence(replayed) is None


# --- re-run ------------------------------------------------------------------------------


def test_a_rerun_executes_no_side_effect_the_original_completed(make_order, submit):
    order, original = refunded_run(make_order, submit)
    assert ProviderRefund.objects.filter(payment_ref=order.payment_ref).count() == 1

    rerun = replay_start(original, mode="rerun", inline=True)

    assert rerun.status == Run.Status.RESOLVED, rerun.outcome_reason
    assert rerun.replay_of == original and rerun.mode == Run.Mode.RERUN
    assert ProviderRefund.objects.filter(payment_ref=order.payment_ref).count() == 1
    assert len(mail.outbox) == 1
    assert Effect.objects.count() == 2  # the original's refund and reply, nothing new
    replayed = rerun.spans.filter(kind="tool", attributes__replayed_from_ledger=True)
    assert set(replayed.values_list("name", flat=True)) == {"issue_refund", "send_reply"}


def test_a_rerun_is_enqueued_like_any_run(
    make_order, submit, enqueued_runs, django_capture_on_commit_callbacks
):
    order, original = refunded_run(make_order, submit)
    with django_capture_on_commit_callbacks(execute=True):
        rerun = replay_start(original, mode="rerun")
    assert rerun.status == Run.Status.QUEUED
    assert enqueued_runs[-1] == rerun.pk


# --- fork --------------------------------------------------------------------------------


def test_a_dry_run_fork_executes_nothing_and_records_what_would_have_executed(
    make_order, submit, support_lead
):
    order = make_order(total_cents=9000)
    original = advance(submit(f"Refund {order.order_id} please"))
    action_reject(action=PendingAction.objects.get(run=original), actor=support_lead, reason="no")
    original = advance(original)
    assert original.status == Run.Status.RESOLVED, original.outcome_reason
    effects, actions, sent = Effect.objects.count(), PendingAction.objects.count(), len(mail.outbox)

    fork = replay_start(original, mode="fork", from_step=2, inline=True)

    assert fork.dry_run and fork.replay_from_step == 2
    assert fork.status == Run.Status.RESOLVED, fork.outcome_reason
    assert not ProviderRefund.objects.exists()
    assert Effect.objects.count() == effects and not Effect.objects.filter(run=fork).exists()
    assert PendingAction.objects.count() == actions
    assert len(mail.outbox) == sent
    would = fork.spans.get(kind="tool", name="issue_refund")
    assert would.attributes["dry_run"] is True and would.attributes["would_execute"] is True
    assert would.output["would_have_executed"]["amount_cents"] == 9000
    assert would.input == {
        "order_id": order.order_id,
        "amount_cents": 9000,
        "currency": "USD",
        "reason": "Customer request",
    }
    assert fork.spans.filter(kind="approval", output__status="would_need_approval").exists()
    assert fork.spans.filter(kind="tool", name="send_reply", attributes__dry_run=True).exists()
    # The steps before 2 are the original's, copied; step 2 on is the fork's own.
    assert fork.spans.filter(step=1, attributes__has_key="copied_from").exists()
    assert not fork.spans.filter(step__gte=2, attributes__has_key="copied_from").exists()
    assert fork.messages[:2] == original.messages[:2]
    # What the copied spans point at (the lookup's answer in a tool result, the
    # model's turns) came with the copied conversation: every span reads.
    copied_lookup = fork.spans.get(step=1, kind=Span.Kind.TOOL, name="lookup_order")
    copied_lookup.run = fork
    assert copied_lookup.output == {"tool_result": copied_lookup.output["tool_result"]}
    assert span_output(copied_lookup)["order_id"] == order.order_id
    assert not [s for s in fork.spans.select_related("run__ticket") if span_unreadable(s)]
    # One root, the fork's own (not the original's copied), written as it ended: it
    # says what it replays and starts no later than the steps copied before it.
    [root] = fork.spans.filter(kind=Span.Kind.RUN)
    assert "copied_from" not in root.attributes
    assert root.attributes["replay_mode"] == "fork" and root.attributes["replay_from_step"] == 2
    assert root.attributes["replay_of"] == str(original.code)
    assert root.started_at == min(s.started_at for s in fork.spans.all())
    assert set(fork.spans.exclude(pk=root.pk).values_list("parent_span_id", flat=True)) == {
        root.span_id
    }


@pytest.mark.parametrize("mode", ["eval", "shadow"])
def test_eval_and_shadow_runs_are_dry_forks_from_the_first_step_under_their_own_mode(
    make_order, submit, mode
):
    order, original = refunded_run(make_order, submit)
    refunds = ProviderRefund.objects.count()

    run = replay_start(original, mode=mode, inline=True)

    assert (run.mode, run.replay_from_step, run.dry_run) == (mode, 1, True)
    assert run.status == Run.Status.RESOLVED, run.outcome_reason
    assert ProviderRefund.objects.count() == refunds
    assert not Effect.objects.filter(run=run).exists()
    assert run.spans.filter(kind="tool", name="issue_refund", attributes__dry_run=True).exists()


def test_a_dry_run_fork_of_a_refunded_run_sees_the_order_as_it_was(make_order, submit):
    order, original = refunded_run(make_order, submit, cents=2500)

    fork = replay_start(original, mode="fork", from_step=2, inline=True)

    assert fork.status == Run.Status.RESOLVED, fork.outcome_reason
    assert ProviderRefund.objects.count() == 1
    would = fork.spans.get(kind="tool", name="issue_refund")
    assert would.attributes["would_execute"] and would.input["amount_cents"] == 2500


def test_a_fork_can_take_read_tool_results_as_given(make_order, submit, scripted):
    order, original = refunded_run(make_order, submit)
    model = scripted(
        [text("Look again."), tool_use("lookup_order", {"order_id": order.order_id}, id="t1")],
        [text("Done.")],
    )
    given = {"lookup_order": {"order_id": order.order_id, "status": "lost in transit"}}

    fork = replay_start(original, mode="fork", from_step=1, inline=True, tool_results=given)

    span = fork.spans.get(kind="tool", name="lookup_order", attributes__source="given")
    assert span.output["status"] == "lost in transit"
    answered = model.calls[-1][-1]["content"][0]
    assert "lost in transit" in answered["content"]


def test_a_given_result_for_one_call_signature_wins_over_the_tools(make_order, submit, scripted):
    order, original = refunded_run(make_order, submit)
    other = make_order(total_cents=100)
    given = {
        # Not canonical as written (spaces): normalised, and matched on resolved arguments.
        f'lookup_order:{{"order_id": "{other.order_id}"}}': {"status": "for the other"},
        "lookup_order": {"status": "for any lookup"},
    }
    scripted(
        [
            text("Look both up."),
            tool_use("lookup_order", {"order_id": order.order_id}, id="t1"),
            tool_use("lookup_order", {"order_id": other.order_id.lower()}, id="t2"),
        ],
        [text("Done.")],
    )

    fork = replay_start(original, mode="fork", from_step=1, inline=True, tool_results=given)

    outputs = {
        s.input["order_id"]: s.output["status"]
        for s in fork.spans.filter(kind="tool", attributes__source="given")
    }
    assert outputs == {order.order_id: "for any lookup", other.order_id: "for the other"}


def test_a_live_fork_goes_through_the_ledger(make_order, submit):
    order, original = refunded_run(make_order, submit)

    fork = replay_start(original, mode="fork", from_step=2, live=True, inline=True)

    assert not fork.dry_run
    assert fork.status == Run.Status.RESOLVED, fork.outcome_reason
    assert ProviderRefund.objects.count() == 1
    assert fork.spans.filter(kind="tool", attributes__replayed_from_ledger=True).exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "sideways"}, "Unknown mode"),
        ({"mode": "fork"}, "needs the step"),
        ({"mode": "fork", "from_step": 9}, "not a model step"),
        ({"mode": "fork", "from_step": 0}, "not a model step"),
        ({"mode": "exact", "model": "offline"}, "exact replay"),
        ({"mode": "rerun", "from_step": 1}, "fork only"),
        ({"mode": "rerun", "live": True}, "live applies to a fork"),
        ({"mode": "rerun", "prompt_version": "nope"}, "No prompt version"),
        ({"mode": "rerun", "model": "gpt-unknown"}, "ANTHROPIC_API_KEY"),
        ({"mode": "rerun", "tool_results": {"issue_refund": {}}}, "dry run only"),
        ({"mode": "fork", "from_step": 1, "tool_results": {"fly": {}}}, "unknown tool"),
        ({"mode": "fork", "from_step": 1, "tool_results": {"lookup_order:x": {}}}, "signature"),
        ({"mode": "fork", "from_step": 1, "tool_results": {"lookup_order": "x"}}, "JSON object"),
        ({"mode": "eval", "live": True}, "dry run"),
        ({"mode": "shadow", "live": True}, "dry run"),
    ],
)
def test_a_bad_replay_request_is_refused_and_writes_nothing(make_order, submit, kwargs, message):
    order, original = refunded_run(make_order, submit)
    runs = Run.objects.count()
    with pytest.raises(ReplayError, match=message):
        replay_start(original, **kwargs)
    assert Run.objects.count() == runs


def test_an_unfinished_run_cannot_be_replayed(make_order, submit):
    order = make_order(total_cents=9000)
    parked = advance(submit(f"Refund {order.order_id} please"))
    assert parked.status == Run.Status.AWAITING_APPROVAL
    with pytest.raises(ReplayError, match="only a finished run"):
        replay_start(parked, mode="exact")


def test_a_live_fork_by_a_user_needs_the_permission(make_order, submit, support_lead):
    order, original = refunded_run(make_order, submit)
    with pytest.raises(ReplayError, match="replay_live"):
        replay_start(original, mode="fork", from_step=2, live=True, user=support_lead)


# --- prompt versions ---------------------------------------------------------------------


class CapturingModel:
    def __init__(self):
        self.systems, self.tools = [], []

    def create(self, *, model, system, messages, tools, max_tokens):
        self.systems.append(system)
        self.tools.append(tools)
        return ModelResponse(content=[text("Nothing to do.")], stop_reason="end_turn", model=model)


def test_a_run_uses_and_records_the_current_prompt_version(submit, monkeypatch):
    version = PromptVersion.objects.create(
        name="v2-terse",
        system_prompt="Be terse.",
        tool_descriptions={"lookup_order": "Find one order."},
        is_current=True,
    )
    model = CapturingModel()
    monkeypatch.setattr("agentops.runtime.loop.get_model_client", lambda name: model)

    run = advance(submit("Where is my parcel?"))

    assert run.prompt_version == version
    assert model.systems == ["Be terse."]
    described = {t["name"]: t["description"] for t in model.tools[0]}
    assert described["lookup_order"] == "Find one order."
    assert described["issue_refund"] == tools_module.TOOLS["issue_refund"].description
    span = run.spans.get(kind="model", name="messages.create")
    assert span.attributes["prompt_version"] == "v2-terse"


def test_without_a_current_version_the_built_in_prompt_is_used_and_said(submit, monkeypatch):
    model = CapturingModel()
    monkeypatch.setattr("agentops.runtime.loop.get_model_client", lambda name: model)
    run = advance(submit("Where is my parcel?"))
    assert run.prompt_version is None
    assert "customer support agent" in model.systems[0]
    assert run.spans.get(kind="model", name="messages.create").attributes["prompt_version"] == (
        "built-in"
    )


def test_a_fork_can_name_another_prompt_version_and_model(make_order, submit, monkeypatch):
    order, original = refunded_run(make_order, submit)
    PromptVersion.objects.create(name="v3", system_prompt="Try harder.")
    model = CapturingModel()
    monkeypatch.setattr("agentops.runtime.loop.get_model_client", lambda name: model)

    fork = replay_start(
        original, mode="fork", from_step=3, prompt_version="v3", model="offline-b", inline=True
    )

    assert fork.prompt_version.name == "v3" and fork.model == "offline-b"
    assert model.systems == ["Try harder."]
    span = fork.spans.get(kind="model", name="messages.create", step=3)
    assert span.attributes["prompt_version"] == "v3" and span.model == "offline-b"
    assert not fork.spans.filter(kind="model", step=3, attributes__has_key="copied_from").exists()
    assert original.prompt_version is None
    assert Span.objects.filter(run=original).count() == original.spans.count()
