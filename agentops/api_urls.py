"""The JSON API, mounted at /api/ by agentops.urls. No trailing slashes: clients POST
to exactly these paths, and a redirect would turn their POST into a GET."""

from django.urls import path, re_path

from agentops import api

urlpatterns = [
    path("tickets", api.tickets_create, name="api-tickets"),
    path("runs/<str:run_id>", api.run_detail, name="api-run"),
    # Last: everything else under /api/ (a typo, a trailing slash) answers a JSON 404.
    re_path(r"^(?P<path>.*)$", api.not_found),
]
