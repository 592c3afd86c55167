from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from agentops import views

urlpatterns = [
    path("", include("traces.urls")),
    path("", include("evals.urls")),
    path("approvals/", include("approvals.urls")),
    path("api/", include("agentops.api_urls")),
    path("finance/reconciliation/", views.reconciliation, name="reconciliation"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
]
