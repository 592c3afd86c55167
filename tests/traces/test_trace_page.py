"""The trace page: the waterfall, a span's detail in place, large parts on demand, JSON out."""

import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from agentops.models import Run
from traces.models import Span

HX = {"HX-Request": "true"}


@pytest.fixture
def lead_client(client, support_lead):
    client.force_login(support_lead)
    return client


def detail(client, run, span, **kwargs):
    return client.get(reverse("span_detail", args=[run.code, span.span_id]), headers=HX, **kwargs)


def test_it_draws_the_spans_on_one_time_axis_with_attempts_nested_under_their_call(
    lead_client, failed_run
):
    run = failed_run["run"]
    response = lead_client.get(reverse("run_detail", args=[run.code]))
    rows = response.context["rows"]
    assert [(r.name, r.depth, r.span is None) for r in rows] == [
        ("run", 0, False),
        ("messages.create", 1, False),
        ("issue_refund", 1, False),  # validate
        ("issue_refund", 1, True),  # the call, grouping its attempts
        ("issue_refund", 2, False),
        ("issue_refund", 2, False),
    ]
    root, model = rows[0], rows[1]
    assert (root.left, root.width) == (0, 100)
    assert model.left == pytest.approx(2.5) and model.width == pytest.approx(20)
    group = rows[3]
    assert group.attempts == 2 and group.status == "error" and group.error_class == "terminal"
    html = response.content.decode()
    assert "2 attempts" in html
    assert 'class="error-class error-class-transient"' in html
    assert "CardDeclined: the issuer refused the refund" in html  # the error shows in the row
    assert [t.label for t in response.context["ticks"]] == [
        "0 ms",
        "1.0 s",
        "2.0 s",
        "3.0 s",
        "4.0 s",
    ]


def test_it_links_every_span_to_its_detail_with_htmx_and_a_plain_href(lead_client, failed_run):
    run, span = failed_run["run"], failed_run["attempts"][1]
    html = lead_client.get(reverse("run_detail", args=[run.code])).content.decode()
    url = reverse("span_detail", args=[run.code, span.span_id])
    assert f'href="{url}"' in html
    assert f'hx-get="{url}" hx-target="#detail-{span.span_id}"' in html


def test_it_shows_a_failed_tool_attempt_with_its_class_count_and_raw_response(
    lead_client, failed_run
):
    run, span = failed_run["run"], failed_run["attempts"][1]
    response = detail(lead_client, run, span)
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html
    assert "Raw tool response" in html
    assert "&quot;decline_code&quot;: &quot;do_not_honor&quot;" in html
    assert "Arguments sent to the tool" in html
    assert "CardDeclined: the issuer refused the refund" in html
    assert "2 of 2" in html
    assert 'error-class-terminal">Terminal<' in html
    assert "Ledger record" in html and "the issuer refused the refund" in html


def test_it_shows_a_model_call_as_messages_and_blocks_with_tokens_and_cost(lead_client, failed_run):
    html = detail(lead_client, failed_run["run"], failed_run["model"]).content.decode()
    assert "Input messages" in html and "Please refund ORD-10023" in html
    assert "Output blocks" in html and "I will refund it." in html
    assert '<span class="block-type">tool_use</span> <code>issue_refund</code>' in html
    assert "812 / 64" in html
    assert "$0.003396" in html
    assert "800 ms" in html
    assert "claude-sonnet-4-5" in html


def test_it_shows_arguments_as_sent_and_as_resolved(lead_client, failed_run):
    html = detail(lead_client, failed_run["run"], failed_run["validate"]).content.decode()
    assert "Arguments as the model sent them" in html
    assert "As validated and resolved" in html
    assert "&quot;order_id&quot;: &quot;10023&quot;" in html
    assert "&quot;order_id&quot;: &quot;ORD-10023&quot;" in html


def test_it_loads_a_large_payload_only_when_opened(lead_client, make_run, make_span):
    run = make_run()
    big = {"rows": [f"row {i:05d} " + "x" * 40 for i in range(200)]}
    span = make_span(run, kind=Span.Kind.TOOL, name="find_orders", output=big)
    html = detail(lead_client, run, span).content.decode()
    part_url = reverse("span_part", args=[run.code, span.span_id, "output"])
    assert f'hx-get="{part_url}" hx-trigger="toggle once"' in html
    assert "row 00199" not in html

    loaded = lead_client.get(part_url, headers=HX)
    assert loaded.status_code == 200
    assert "row 00199" in loaded.content.decode()
    plain = lead_client.get(part_url)
    assert plain["Content-Type"] == "application/json"
    assert json.loads(plain.content) == big


def test_it_answers_404_for_an_empty_or_unknown_part(lead_client, make_run, make_span):
    run = make_run()
    span = make_span(run, input=None)
    assert (
        lead_client.get(reverse("span_part", args=[run.code, span.span_id, "input"])).status_code
        == 404
    )
    assert (
        lead_client.get(reverse("span_part", args=[run.code, span.span_id, "secrets"])).status_code
        == 404
    )


def test_it_opens_a_span_in_the_page_itself_without_htmx(lead_client, failed_run):
    run, span = failed_run["run"], failed_run["attempts"][1]
    response = lead_client.get(reverse("span_detail", args=[run.code, span.span_id]))
    assert response.status_code == 302
    assert response["Location"].endswith(f"?span={span.span_id}#span-{span.span_id}")
    html = lead_client.get(response["Location"]).content.decode()
    assert "<html" in html
    assert "Raw tool response" in html
    assert 'aria-expanded="true"' in html


def test_it_answers_404_for_a_span_of_another_run(lead_client, failed_run, make_run):
    other = make_run()
    span = failed_run["model"]
    response = lead_client.get(reverse("span_detail", args=[other.code, span.span_id]), headers=HX)
    assert response.status_code == 404
    assert lead_client.get(reverse("span_json", args=[other.code, span.span_id])).status_code == 404


@pytest.mark.parametrize("name", ["span_detail", "span_json"])
def test_it_keeps_spans_from_outsiders_and_writes(client, outsider, support_lead, failed_run, name):
    run, span = failed_run["run"], failed_run["model"]
    url = reverse(name, args=[run.code, span.span_id])
    assert client.get(url).status_code == 302  # anonymous: to the login page
    client.force_login(outsider)
    assert client.get(url, headers=HX).status_code == 403
    client.force_login(support_lead)
    assert client.post(url).status_code == 405


def test_it_gives_a_span_as_json(lead_client, failed_run):
    run, span = failed_run["run"], failed_run["attempts"][0]
    body = lead_client.get(reverse("span_json", args=[run.code, span.span_id])).json()
    assert body["span_id"] == span.span_id
    assert body["error_class"] == "transient"
    assert body["attempt"] == 1
    assert body["duration_ms"] == 700
    assert body["attributes"]["idempotency_key"].startswith("refund:")


def test_it_downloads_the_whole_trace_as_a_json_file(lead_client, failed_run):
    run = failed_run["run"]
    response = lead_client.get(reverse("run_trace_json", args=[run.code]))
    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="trace-{run.trace_id}.json"'
    body = json.loads(response.content)
    assert body["run"]["code"] == str(run.code)
    assert body["run"]["status"] == "failed"
    assert [s["kind"] for s in body["spans"]] == ["run", "model", "validate", "tool", "tool"]
    assert body["effects"][0]["status"] == "failed"
    model = body["spans"][1]["otel"]
    assert model["name"] == "chat claude-sonnet-4-5"
    assert model["attributes"]["gen_ai.usage.input_tokens"] == 812
    failed = body["spans"][4]["otel"]["attributes"]
    assert failed["gen_ai.tool.name"] == "issue_refund" and failed["error.type"] == "terminal"
    html = lead_client.get(reverse("run_detail", args=[run.code])).content.decode()
    assert f'href="{reverse("run_trace_json", args=[run.code])}" download' in html


def test_it_marks_an_unfinished_span_as_running_to_the_end_of_the_axis(
    lead_client, make_run, make_span
):
    run = make_run(Run.Status.RUNNING)
    now = timezone.now()
    make_span(run, started_at=now - timedelta(seconds=10), ended_at=now - timedelta(seconds=9))
    make_span(
        run,
        kind=Span.Kind.TOOL,
        name="issue_refund",
        status=Span.Status.STARTED,
        started_at=now - timedelta(seconds=5),
        ended_at=None,
    )
    rows = lead_client.get(reverse("run_detail", args=[run.code])).context["rows"]
    open_row = rows[-1]
    assert not open_row.ended and open_row.duration == "running…"
    assert open_row.left + open_row.width == pytest.approx(100, abs=1)
