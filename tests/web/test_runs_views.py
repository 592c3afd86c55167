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


# --- access -----------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["runs", "approvals"])
def test_it_sends_anonymous_visitors_to_the_login_page(client, name):
    response = client.get(reverse(name))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login") + "?next=")


def test_it_sends_anonymous_visitors_of_a_run_to_the_login_page(client, make_run):
    run = make_run()
    response = client.get(reverse("run_detail", args=[run.code]))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_it_forbids_the_runs_list_to_users_who_are_not_staff(client, outsider):
    client.force_login(outsider)
    assert client.get(reverse("runs")).status_code == 403
    assert client.get(reverse("runs"), headers=HX).status_code == 403


def test_it_forbids_a_run_page_to_users_who_are_not_staff(client, outsider, make_run):
    client.force_login(outsider)
    response = client.get(reverse("run_detail", args=[make_run().code]))
    assert response.status_code == 403
    assert b"Not allowed" in response.content


def test_it_shows_the_runs_list_to_staff_without_the_decide_permission(client, staff_viewer):
    client.force_login(staff_viewer)
    assert client.get(reverse("runs")).status_code == 200


@pytest.mark.parametrize("method", ["post", "put", "delete"])
def test_it_refuses_writes_to_the_runs_list(lead_client, method):
    assert getattr(lead_client, method)(reverse("runs")).status_code == 405


def test_it_refuses_a_post_to_a_run_page(lead_client, make_run):
    run = make_run()
    assert lead_client.post(reverse("run_detail", args=[run.code])).status_code == 405


# --- runs list --------------------------------------------------------------


def test_it_lists_runs_newest_first_with_their_ticket(lead_client, make_run):
    old = make_run(subject="Old ticket", created_at=timezone.now() - timedelta(hours=2))
    new = make_run(
        Run.Status.FAILED, subject="New ticket", customer_email="new@example.com", cost="0.0123"
    )
    response = lead_client.get(reverse("runs"))
    assert response.status_code == 200
    html = response.content.decode()
    assert html.index("New ticket") < html.index("Old ticket")
    assert "new@example.com" in html
    assert 'class="badge badge-failed"' in html
    assert "$0.0123" in html
    assert reverse("run_detail", args=[new.code]) in html
    assert reverse("run_detail", args=[old.code]) in html
    assert "<html" in html  # the whole page, with navigation


def test_it_answers_htmx_with_the_table_fragment_only(lead_client, make_run):
    make_run(subject="Fragment ticket")
    response = lead_client.get(reverse("runs"), headers=HX)
    html = response.content.decode()
    assert response.status_code == 200
    assert "Fragment ticket" in html
    assert html.lstrip().startswith('<section id="runs-table"')
    assert "<html" not in html and '<nav class="nav"' not in html


def test_it_filters_runs_by_status(lead_client, make_run):
    make_run(Run.Status.RESOLVED, subject="Resolved one")
    make_run(Run.Status.ESCALATED, subject="Escalated one")
    html = lead_client.get(reverse("runs"), {"status": "escalated"}).content.decode()
    assert "Escalated one" in html
    assert "Resolved one" not in html


def test_it_gives_every_filter_an_href_and_pushes_its_url(lead_client, make_run):
    make_run()
    html = lead_client.get(reverse("runs")).content.decode()
    assert 'href="/runs/?status=awaiting_approval"' in html
    assert 'hx-get="/runs/?status=awaiting_approval"' in html
    assert 'hx-push-url="true"' in html


def test_it_rejects_an_unknown_status_filter(lead_client):
    response = lead_client.get(reverse("runs"), {"status": "exploded"})
    assert response.status_code == 400
    assert b"status" in response.content


def test_it_pages_fifty_runs_at_a_time_without_counting_them_all(
    lead_client, make_run, django_assert_max_num_queries
):
    base = timezone.now() - timedelta(days=1)
    runs = [
        make_run(subject=f"Ticket {i:03d}", created_at=base + timedelta(minutes=i))
        for i in range(55)
    ]
    with django_assert_max_num_queries(8) as captured:
        first = lead_client.get(reverse("runs"))
    run_table = Run._meta.db_table
    assert not any(
        "COUNT(" in q["sql"].upper() and run_table in q["sql"] for q in captured.captured_queries
    )
    page1 = first.context["page"]
    assert [r.pk for r in page1.runs] == [r.pk for r in reversed(runs[5:])]
    assert page1.has_next and not page1.has_previous

    second = lead_client.get(reverse("runs"), {"after": str(runs[5].code)})
    page2 = second.context["page"]
    assert [r.pk for r in page2.runs] == [r.pk for r in reversed(runs[:5])]
    assert page2.has_previous and not page2.has_next
    assert "Older" not in second.content.decode()

    back = lead_client.get(reverse("runs"), {"before": str(runs[4].code)})
    assert [r.pk for r in back.context["page"].runs] == [r.pk for r in reversed(runs[5:])]
    assert not back.context["page"].has_previous


def test_it_keeps_the_status_filter_when_paging(lead_client, make_run):
    for _ in range(51):
        make_run(Run.Status.ESCALATED)
    html = lead_client.get(reverse("runs"), {"status": "escalated"}).content.decode()
    assert "status=escalated&amp;after=" in html


def test_it_answers_404_for_a_page_cursor_that_names_no_run(lead_client):
    response = lead_client.get(reverse("runs"), {"after": "00000000-0000-0000-0000-000000000000"})
    assert response.status_code == 404


# --- run page ---------------------------------------------------------------


def test_it_answers_404_for_an_unknown_run(lead_client):
    url = reverse("run_detail", args=["00000000-0000-0000-0000-000000000000"])
    assert lead_client.get(url).status_code == 404
    assert lead_client.get(url, headers=HX).status_code == 404


def test_it_shows_the_ticket_the_outcome_and_every_step_in_order(
    lead_client, make_run, make_span, make_effect
):
    run = make_run(
        Run.Status.ESCALATED,
        body="Please refund ORD-10023, it broke.",
        reply="We are looking into it.",
        outcome_reason="held reply: claims a refund the ledger does not hold",
        input_tokens=1200,
        output_tokens=340,
    )
    make_span(run, kind=Span.Kind.TRIAGE, name="triage", step=0)
    make_span(
        run,
        kind=Span.Kind.TOOL,
        name="issue_refund",
        step=2,
        status=Span.Status.ERROR,
        error_class=Span.ErrorClass.TRANSIENT,
        error_message="GatewayTimeout: no answer after 10s",
        attempt=2,
        input={"order_id": "ORD-10023", "amount_cents": 1999},
    )
    make_effect(run, status="unknown", provider_ref="")
    html = lead_client.get(reverse("run_detail", args=[run.code])).content.decode()

    assert "Please refund ORD-10023, it broke." in html
    assert "We are looking into it." in html
    assert "held reply: claims a refund the ledger does not hold" in html
    assert html.index(">triage<") < html.index(">issue_refund<")
    assert 'class="badge badge-span-error"' in html
    assert "GatewayTimeout: no answer after 10s" in html
    assert 'class="error-class error-class-transient"' in html
    assert "attempt 2" in html
    assert "420 ms" in html
    assert "&quot;order_id&quot;: &quot;ORD-10023&quot;" in html  # pretty JSON, escaped
    assert "badge-effect-unknown" in html
    assert f"refund:{run.ticket.code}:ORD-10023" in html
    assert "1200 / 340" in html


def test_it_folds_a_long_conversation_into_details(lead_client, make_run):
    run = make_run(messages=[{"role": "user", "content": f"line {i}"} for i in range(40)])
    html = lead_client.get(reverse("run_detail", args=[run.code])).content.decode()
    assert '<details class="payload">' in html
    assert "The conversation as stored" in html


def test_it_escapes_what_the_customer_and_the_model_wrote(lead_client, make_run, make_span):
    run = make_run(body="<script>alert('body')</script>", subject="<b>subject</b>")
    make_span(run, output={"text": "<img src=x onerror=alert(1)>"})
    html = lead_client.get(reverse("run_detail", args=[run.code])).content.decode()
    assert "<script>alert(" not in html
    assert "<img src=x" not in html
    assert "<b>subject</b>" not in html
    assert "&lt;script&gt;" in html


def test_it_links_the_run_s_pending_actions_to_their_approval_page(lead_client, awaiting):
    html = lead_client.get(reverse("run_detail", args=[awaiting.run.code])).content.decode()
    assert "$129.00" in html
    assert reverse("approval_detail", args=[awaiting.code]) in html
    assert "amount_over_threshold" in html


def test_it_polls_an_open_run_every_two_seconds(lead_client, make_run):
    run = make_run(Run.Status.RUNNING)
    html = lead_client.get(reverse("run_detail", args=[run.code])).content.decode()
    assert 'hx-trigger="every 2s"' in html


def test_it_does_not_poll_a_final_run(lead_client, make_run):
    run = make_run(Run.Status.RESOLVED)
    html = lead_client.get(reverse("run_detail", args=[run.code])).content.decode()
    assert "every 2s" not in html


def test_it_answers_a_poll_of_an_open_run_with_the_steps_fragment(lead_client, make_run, make_span):
    run = make_run(Run.Status.RUNNING)
    make_span(
        run, name="lookup_order", kind=Span.Kind.TOOL, status=Span.Status.STARTED, ended_at=None
    )
    response = lead_client.get(reverse("run_detail", args=[run.code]), headers=HX)
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<div id="run-live"')
    assert "lookup_order" in html and "running…" in html
    assert "<html" not in html
    assert "every 2s" in html


def test_it_answers_204_to_a_poll_when_nothing_changed(lead_client, make_run):
    run = make_run(Run.Status.AWAITING_APPROVAL)
    url = reverse("run_detail", args=[run.code])
    version = lead_client.get(url, headers=HX).context["live_version"]
    assert lead_client.get(url, {"v": version}, headers=HX).status_code == 204
    Run.objects.filter(pk=run.pk).update(step_count=3)
    assert lead_client.get(url, {"v": version}, headers=HX).status_code == 200


def test_it_stops_polling_once_the_run_is_final(lead_client, make_run):
    run = make_run(Run.Status.RESOLVED, reply="Your refund is on its way.")
    response = lead_client.get(reverse("run_detail", args=[run.code]), headers=HX)
    assert response.status_code == 286
    html = response.content.decode()
    assert "Your refund is on its way." in html
    assert "every 2s" not in html


def test_it_shows_short_flat_attributes_as_chips_and_nested_ones_as_json(
    lead_client, make_run, make_span
):
    run = make_run()
    flat = make_span(run, name="flat", attributes={"route": "offline", "outcome_unknown": True})
    nested = make_span(run, name="nested", attributes={"usage": {"input_tokens": 12}})

    def detail(span):
        url = reverse("span_detail", args=[run.code, span.span_id])
        return lead_client.get(url, headers=HX).content.decode()

    html = detail(flat)
    assert '<span class="chip-key">route</span> offline' in html
    assert '<span class="chip-key">outcome_unknown</span> true' in html
    html = detail(nested)
    assert "&quot;usage&quot;: {" in html
    assert html.count('<div class="payload-label">Attributes</div>') == 1


def test_it_polls_the_first_page_and_answers_204_while_nothing_changed(lead_client, make_run):
    run = make_run(Run.Status.RUNNING)
    response = lead_client.get(reverse("runs"), {"status": "running"})
    poll = response.context["poll_query"]
    assert f'hx-get="/runs/?{poll.replace("&", "&amp;")}" hx-trigger="every 5s"' in (
        response.content.decode()
    )
    assert lead_client.get(f"/runs/?{poll}", headers=HX).status_code == 204
    Run.objects.filter(pk=run.pk).update(step_count=2)
    again = lead_client.get(f"/runs/?{poll}", headers=HX)
    assert again.status_code == 200
    assert again.content.decode().lstrip().startswith('<section id="runs-table"')


def test_it_does_not_poll_older_pages(lead_client, make_run):
    runs = [make_run() for _ in range(51)]
    html = lead_client.get(reverse("runs"), {"after": str(runs[-1].code)}).content.decode()
    assert "every 5s" not in html
