from django.urls import reverse


def test_an_htmx_poll_from_a_signed_out_browser_redirects_the_whole_page(client, db):
    response = client.get(reverse("approvals_count"), headers={"HX-Request": "true"})

    assert response.status_code == 200
    assert response["HX-Redirect"].startswith(reverse("login"))


def test_a_plain_request_from_a_signed_out_browser_gets_the_usual_redirect(client, db):
    response = client.get(reverse("runs"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    assert "HX-Redirect" not in response
