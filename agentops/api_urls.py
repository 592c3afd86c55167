"""The JSON API, mounted at /api/ by agentops.urls. No trailing slashes: clients POST
to exactly these paths, and a redirect would turn their POST into a GET."""

from django.urls import path

from agentops import api

urlpatterns = [
    path("tickets", api.tickets_create, name="api-tickets"),
    path("runs/<str:run_id>", api.run_detail, name="api-run"),
]
