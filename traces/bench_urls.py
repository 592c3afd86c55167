"""The site's URLs plus a bare view, for `manage.py bench_web` only."""

from django.http import HttpRequest, HttpResponse
from django.urls import include, path


def bare(request: HttpRequest) -> HttpResponse:
    """The floor: the same middleware (session, auth, login), no query, no template."""
    return HttpResponse("ok", content_type="text/plain")


urlpatterns = [
    path("__bench/bare/", bare, name="bench_bare"),
    path("", include("agentops.urls")),
]
