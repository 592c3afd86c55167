"""The comparison view, the replay buttons, the regression-case form and the evals pages."""

import json
from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from agentops.models import PromptVersion, Run
from evals.models import EvalResult, EvalRun, RegressionCase, ShadowRun, ShadowSetting
from tests.evals.helpers import LOOKUP_OK, refund_conversation

HX = {"HX-Request": "true"}
pytestmark = pytest.mark.django_db


def _messages(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


# --- the comparison ---------------------------------------------------------------


def test_it_sends_anonymous_visitors_of_the_comparison_to_the_login_page(client, refund_run):
    response = client.get(reverse("run_compare", args=[refund_run.code]))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_it_forbids_the_comparison_to_users_who_are_not_staff(client, outsider, refund_run):
    client.force_login(outsider)
    assert client.get(reverse("run_compare", args=[refund_run.code])).status_code == 403


def test_it_answers_404_for_an_unknown_run_or_an_unknown_other_run(
    client, staff_viewer, refund_run
):
    client.force_login(staff_viewer)
    url = reverse("run_compare", args=["00000000-0000-0000-0000-000000000000"])
    assert client.get(url).status_code == 404
    url = reverse("run_compare", args=[refund_run.code])
    assert client.get(url, {"with": "not-a-uuid"}).status_code == 404


def test_it_refuses_a_post_to_the_comparison(client, staff_viewer, refund_run):
    client.force_login(staff_viewer)
    assert client.post(reverse("run_compare", args=[refund_run.code])).status_code == 405


def test_a_replay_is_shown_beside_its_original_with_the_divergence_marked(
    client, staff_viewer, refund_run, make_run
):
    replay = Run.objects.create(
        ticket=refund_run.ticket,
        status=Run.Status.RESOLVED,
        mode=Run.Mode.RERUN,
        replay_of=refund_run,
        dry_run=True,
        messages=refund_conversation(999),
    )
    client.force_login(staff_viewer)

    response = client.get(reverse("run_compare", args=[replay.code]))

    assert response.status_code == 200
    html = response.content.decode()
    assert "Diverged at step 2" in html
    assert 'id="step-2" class="is-different is-divergence"' in html
    assert "different arguments: amount_cents" in html
    assert reverse("run_detail", args=[refund_run.code]) in html  # link to the original
    assert reverse("run_detail", args=[replay.code]) in html
    assert 'data-side="left"' in html and 'data-side="right"' in html
    assert response.context["left"]["run"] == refund_run
    assert response.context["right"]["run"] == replay


def test_the_original_compares_with_its_latest_replay(client, staff_viewer, refund_run):
    older = Run.objects.create(
        ticket=refund_run.ticket,
        status="resolved",
        mode="exact",
        replay_of=refund_run,
        messages=refund_conversation(1999),
        created_at=timezone.now() - timedelta(hours=1),
    )
    newer = Run.objects.create(
        ticket=refund_run.ticket,
        status="resolved",
        mode="rerun",
        replay_of=refund_run,
        messages=refund_conversation(1999),
    )
    client.force_login(staff_viewer)

    response = client.get(reverse("run_compare", args=[refund_run.code]))

    assert response.context["right"]["run"] == newer
    assert "Same decisions all the way" in response.content.decode()
    assert [r.pk for r in response.context["replays"]] == [newer.pk, older.pk]


def test_any_two_runs_compare_with_the_with_parameter(client, staff_viewer, refund_run, make_run):
    other = make_run(Run.Status.ESCALATED, messages=refund_conversation(5000))
    client.force_login(staff_viewer)

    response = client.get(reverse("run_compare", args=[refund_run.code]), {"with": other.code})

    assert response.context["right"]["run"] == other
    assert response.context["comparison"].divergence_step == 2


def test_a_run_without_replays_says_there_is_nothing_to_compare(client, staff_viewer, refund_run):
    client.force_login(staff_viewer)
    response = client.get(reverse("run_compare", args=[refund_run.code]))
    assert response.status_code == 200
    assert "no replay to compare with yet" in response.content.decode()


def test_htmx_polls_until_both_runs_have_finished(client, staff_viewer, refund_run):
    replay = Run.objects.create(
        ticket=refund_run.ticket,
        status="running",
        mode="rerun",
        replay_of=refund_run,
        messages=refund_conversation(1999)[:3],
    )
    client.force_login(staff_viewer)
    url = reverse("run_compare", args=[replay.code])

    running = client.get(url, headers=HX)
    assert running.status_code == 200
    assert 'hx-trigger="every 2s"' in running.content.decode()
    assert "<html" not in running.content.decode()

    replay.status, replay.messages = "resolved", refund_conversation(1999)
    replay.save()
    done = client.get(url, headers=HX)
    assert done.status_code == 286  # htmx: stop polling
    assert "every 2s" not in done.content.decode()


# --- the trace page's replay panel and the replay POST ------------------------------


def test_the_trace_page_shows_the_replay_buttons_to_those_who_may_replay(
    client, engineer, staff_viewer, refund_run
):
    url = reverse("run_detail", args=[refund_run.code])
    client.force_login(engineer)
    html = client.get(url).content.decode()
    assert "Replay exactly" in html and "Fork from step" in html
    assert 'value="rerun"' not in html  # a re-run executes for real: live permission only
    assert 'name="csrfmiddlewaretoken"' in html
    assert 'name="live"' not in html  # live replay needs its own permission
    assert "Add to regression set" in html

    client.force_login(staff_viewer)
    html = client.get(url).content.decode()
    assert "Replay exactly" not in html
    assert "Add to regression set" not in html


def test_the_trace_page_offers_live_replay_only_with_its_permission(
    client, live_engineer, refund_run
):
    client.force_login(live_engineer)
    html = client.get(reverse("run_detail", args=[refund_run.code])).content.decode()
    assert 'name="live"' in html
    assert 'value="rerun"' in html


def test_a_replay_links_to_its_original_and_the_original_lists_it(client, engineer, refund_run):
    replay = Run.objects.create(
        ticket=refund_run.ticket,
        status="resolved",
        mode="fork",
        replay_of=refund_run,
        replay_from_step=2,
        dry_run=True,
    )
    client.force_login(engineer)

    html = client.get(reverse("run_detail", args=[replay.code])).content.decode()
    assert "fork</strong> from step 2 (dry run)" in html
    assert reverse("run_detail", args=[refund_run.code]) in html
    assert reverse("run_compare", args=[replay.code]) in html

    html = client.get(reverse("run_detail", args=[refund_run.code])).content.decode()
    assert 'id="run-replays"' in html
    assert reverse("run_compare", args=[replay.code]) in html


def test_replay_starts_a_dry_run_and_lands_on_the_comparison(
    client, engineer, refund_run, fake_engine
):
    client.force_login(engineer)

    response = client.post(reverse("run_replay", args=[refund_run.code]), {"mode": "exact"})

    replay = Run.objects.get(replay_of=refund_run)
    assert response.status_code == 302
    assert response["Location"] == reverse("run_compare", args=[replay.code])
    call = fake_engine.calls[0]
    assert call["mode"] == "exact" and call["live"] is False and call["user"] == engineer
    assert call["from_step"] is None


def test_fork_passes_the_step_the_model_and_the_prompt_version(
    client, engineer, refund_run, fake_engine
):
    version = PromptVersion.objects.create(name="v2", system_prompt="Be careful.")
    client.force_login(engineer)

    client.post(
        reverse("run_replay", args=[refund_run.code]),
        {"mode": "fork", "from_step": "2", "model": "offline", "prompt_version": "v2"},
    )

    call = fake_engine.calls[0]
    assert (call["mode"], call["from_step"], call["model"], call["prompt_version"]) == (
        "fork",
        2,
        "offline",
        version,
    )


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"mode": "fork", "from_step": "9"}, "Step 9 is not a model step"),  # the engine's
        ({"mode": "exact", "model": "offline"}, "An exact replay plays back"),  # the engine's
        ({"mode": "fork"}, "Choose the step to fork from."),
        ({"mode": "teleport"}, "Select a valid choice"),
        ({"mode": "fork", "from_step": "1", "live": "on"}, "permission to replay live"),
        ({"mode": "rerun"}, "permission to re-run"),
        ({"mode": "rerun", "prompt_version": "nope"}, "Select a valid choice"),
    ],
)
def test_a_refused_replay_says_why_on_the_trace_page_and_starts_nothing(
    client, engineer, refund_run, data, error
):
    client.force_login(engineer)

    response = client.post(reverse("run_replay", args=[refund_run.code]), data)

    assert response.status_code == 302
    assert response["Location"] == reverse("run_detail", args=[refund_run.code]) + "#replay"
    assert any(error in m for m in _messages(response)), _messages(response)
    assert not Run.objects.filter(replay_of=refund_run).exists()


def test_live_replay_is_passed_on_with_the_permission(
    client, live_engineer, refund_run, fake_engine
):
    client.force_login(live_engineer)
    url = reverse("run_replay", args=[refund_run.code])
    client.post(url, {"mode": "fork", "from_step": "1", "live": "on"})
    client.post(url, {"mode": "rerun"})
    assert [(c["mode"], c["live"]) for c in fake_engine.calls] == [("fork", True), ("rerun", False)]


def test_an_unfinished_run_cannot_be_replayed(client, engineer, make_run, fake_engine):
    run = make_run(Run.Status.RUNNING)
    client.force_login(engineer)
    response = client.post(reverse("run_replay", args=[run.code]), {"mode": "exact"})
    assert any("once it has finished" in m for m in _messages(response))
    assert fake_engine.calls == []


def test_replay_is_forbidden_without_the_permission(client, staff_viewer, refund_run, fake_engine):
    client.force_login(staff_viewer)
    response = client.post(reverse("run_replay", args=[refund_run.code]), {"mode": "exact"})
    assert response.status_code == 403
    assert fake_engine.calls == []


def test_replay_is_forbidden_to_users_who_are_not_staff(client, outsider, refund_run, fake_engine):
    client.force_login(outsider)
    response = client.post(reverse("run_replay", args=[refund_run.code]), {"mode": "exact"})
    assert response.status_code == 403


def test_replay_refuses_get(client, engineer, refund_run):
    client.force_login(engineer)
    assert client.get(reverse("run_replay", args=[refund_run.code])).status_code == 405


def test_replay_refuses_a_post_without_a_csrf_token(engineer, refund_run, fake_engine):
    client = Client(enforce_csrf_checks=True)
    client.force_login(engineer)
    response = client.post(reverse("run_replay", args=[refund_run.code]), {"mode": "exact"})
    assert response.status_code == 403
    assert fake_engine.calls == []


def test_replay_of_an_unknown_run_is_404(client, engineer):
    client.force_login(engineer)
    url = reverse("run_replay", args=["00000000-0000-0000-0000-000000000000"])
    assert client.post(url, {"mode": "exact"}).status_code == 404


# --- the regression set ------------------------------------------------------------


def test_the_case_form_is_prefilled_from_the_run(client, engineer, refund_run):
    client.force_login(engineer)

    response = client.get(reverse("case_new", args=[refund_run.code]))

    assert response.status_code == 200
    initial = response.context["form"].initial
    assert initial["expected_tool_calls"] == [
        {"tool": "issue_refund", "args": {"order_id": "ORD-10023", "amount_cents": 1999}},
        {"tool": "send_reply", "args": {}},
    ]
    assert initial["expected_status"] == "resolved"
    assert initial["recorded_tool_results"] == [
        {"tool": "lookup_order", "input": {"order_id": "ORD-10023"}, "result": LOOKUP_OK}
    ]
    assert "Blender arrived broken" in response.content.decode()  # the ticket, as kept


def test_adding_a_case_keeps_the_ticket_and_the_recorded_tool_results(client, engineer, refund_run):
    client.force_login(engineer)

    response = client.post(
        reverse("case_new", args=[refund_run.code]),
        {
            "name": "Broken blender, full refund",
            "expected_tool_calls": '[{"tool": "issue_refund", "args": {"amount_cents": 1999}}]',
            "forbidden_tools": ["escalate"],
            "expected_status": "resolved",
            "recorded_tool_results": json.dumps(
                [{"tool": "lookup_order", "input": {"order_id": "ORD-10023"}, "result": LOOKUP_OK}]
            ),
            "notes": "",
            "active": "on",
        },
    )

    assert response.status_code == 302
    case = RegressionCase.objects.get()
    assert case.source_run == refund_run
    assert (case.subject, case.body) == (refund_run.ticket.subject, refund_run.ticket.body)
    assert case.recorded_tool_results[0]["tool"] == "lookup_order"
    assert case.recorded_tool_results[0]["result"]["status"] == "delivered"
    assert case.forbidden_tools == ["escalate"]
    assert case.created_by == engineer


@pytest.mark.parametrize(
    ("calls", "extra", "error"),
    [
        ("[{", {}, "Enter a valid JSON"),
        ('{"tool": "x"}', {}, "Give a JSON list of calls"),
        ('[{"tool": "teleport", "args": {}}]', {}, "Call 1: unknown tool 'teleport'"),
        ('[{"tool": "send_reply", "args": []}]', {}, 'Call 1: "args" must be an object.'),
        ('[{"tool": "send_reply", "wat": 1}]', {}, 'give an object with "tool" and "args" only'),
        (
            '[{"tool": "escalate"}]',
            {"forbidden_tools": ["escalate"]},
            "both expected and forbidden",
        ),
        ("[]", {}, "a case that expects nothing can never fail"),
        (
            "[]",
            {"recorded_tool_results": '[{"tool": "issue_refund", "input": {}, "result": {}}]'},
            "Result 1: 'issue_refund' is not a read tool",
        ),
        (
            "[]",
            {"recorded_tool_results": '[{"tool": "lookup_order"}]'},
            'Result 1: give an object with "tool", "input" and "result".',
        ),
    ],
)
def test_a_bad_case_is_shown_again_with_a_clear_error_and_nothing_saved(
    client, engineer, refund_run, calls, extra, error
):
    client.force_login(engineer)
    data = {"name": "x", "expected_tool_calls": calls, "expected_status": "", **extra}

    response = client.post(reverse("case_new", args=[refund_run.code]), data)

    assert response.status_code == 200
    assert error in response.content.decode().replace("&#x27;", "'").replace("&quot;", '"')
    typed = response.context["form"]["expected_tool_calls"].value()  # shown back, not lost
    assert typed == calls if calls == "[{" else json.loads(typed) == json.loads(calls)
    assert not RegressionCase.objects.exists()


def test_adding_a_case_needs_the_permission(client, staff_viewer, refund_run):
    client.force_login(staff_viewer)
    assert client.get(reverse("case_new", args=[refund_run.code])).status_code == 403
    assert client.post(reverse("case_new", args=[refund_run.code]), {}).status_code == 403


def test_a_case_can_be_edited(client, engineer, refund_run):
    case = RegressionCase.objects.create(
        name="old",
        source_run=refund_run,
        customer_email="a@example.com",
        subject="s",
        body="b",
        expected_status="resolved",
    )
    client.force_login(engineer)

    response = client.post(
        reverse("case_edit", args=[case.code]),
        {"name": "new", "expected_tool_calls": "[]", "expected_status": "escalated"},
    )

    assert response.status_code == 302
    case.refresh_from_db()
    assert (case.name, case.expected_status, case.active) == ("new", "escalated", False)


def test_the_evals_page_lists_eval_runs_and_cases(client, staff_viewer, refund_run):
    case = RegressionCase.objects.create(
        name="Broken blender",
        source_run=refund_run,
        customer_email="a@example.com",
        subject="s",
        body="b",
        expected_status="resolved",
    )
    eval_run = EvalRun.objects.create(cases=1, passed=0, finished_at=timezone.now())
    EvalResult.objects.create(
        eval_run=eval_run,
        case=case,
        passed=False,
        failures=["ended escalated, expected resolved"],
        got={"status": "escalated", "tool_calls": []},
    )
    client.force_login(staff_viewer)

    html = client.get(reverse("evals")).content.decode()
    assert "Broken blender" in html and reverse("eval_detail", args=[eval_run.code]) in html

    html = client.get(reverse("eval_detail", args=[eval_run.code])).content.decode()
    assert "FAIL" in html and "ended escalated, expected resolved" in html


def test_the_evals_pages_are_for_staff(client, outsider):
    client.force_login(outsider)
    assert client.get(reverse("evals")).status_code == 403
    assert client.get(reverse("shadow_summary")).status_code == 403


# --- shadow summary and the dashboard ---------------------------------------------------


def test_the_shadow_page_shows_the_agreement_rate_and_links_differences(
    client, staff_viewer, make_run
):
    ShadowSetting.objects.create(pk=1, enabled=True, share_percent=50, model="offline")
    runs = [make_run(messages=refund_conversation(1999)) for _ in range(4)]
    for n, run in enumerate(runs):
        shadow = Run.objects.create(
            ticket=run.ticket,
            status="resolved",
            mode="fork",
            replay_of=run,
            replay_from_step=1,
            dry_run=True,
            messages=refund_conversation(1999 if n else 500),
        )
        ShadowRun.objects.create(production=run, shadow=shadow)
    client.force_login(staff_viewer)

    response = client.get(reverse("shadow_summary"))

    summary = response.context["summary"]
    assert (summary.compared, summary.agreed) == (4, 3)
    [candidate] = summary.candidates
    assert (candidate.prompt, candidate.compared, candidate.agreement_rate) == ("built-in", 4, 75.0)
    html = response.content.decode()
    assert "75.0%" in html
    differing = ShadowRun.objects.get(production=runs[0]).shadow
    assert reverse("run_compare", args=[differing.code]) in html


def test_the_dashboard_shows_outcomes_by_prompt_version(client, staff_viewer, make_run):
    v1 = PromptVersion.objects.create(name="v1", system_prompt="a")
    v2 = PromptVersion.objects.create(name="v2", system_prompt="b")
    make_run(Run.Status.RESOLVED, prompt_version=v1)
    make_run(Run.Status.FAILED, prompt_version=v1)
    make_run(Run.Status.ESCALATED, prompt_version=v2)
    make_run(Run.Status.RESOLVED)
    replayed = make_run(Run.Status.FAILED, prompt_version=v2, mode=Run.Mode.RERUN)
    assert replayed.mode == "rerun"  # replays are not what customers got: left out
    client.force_login(staff_viewer)

    response = client.get(reverse("dashboard"))

    rows = {v.name: v for v in response.context["by_prompt"]}
    assert (rows["v1"].runs, rows["v1"].resolved, rows["v1"].failed) == (2, 1, 1)
    assert rows["v1"].resolved_rate == 50.0
    assert (rows["v2"].runs, rows["v2"].escalated, rows["v2"].failed) == (1, 1, 0)
    assert rows["built-in"].runs == 1
    assert 'data-prompt="v1"' in response.content.decode()


def test_the_comparison_shows_where_the_engine_found_an_exact_replay_diverging(
    client, staff_viewer, refund_run
):
    replay = Run.objects.create(
        ticket=refund_run.ticket,
        status="failed",
        mode="exact",
        replay_of=refund_run,
        messages=refund_conversation(1999),
        divergence={
            "step": 2,
            "stage": "validation",
            "tool": "issue_refund",
            "tool_use_id": "t2",
            "expected": {"is_error": False},
            "actual": {"is_error": True, "error": "over_fix_limit"},
        },
    )
    client.force_login(staff_viewer)

    html = client.get(reverse("run_compare", args=[replay.code])).content.decode()

    assert 'id="engine-divergence"' in html
    assert "Diverged from the recording at step 2 (validation of issue_refund)" in html
