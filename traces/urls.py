from django.urls import path

from traces import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("runs/", views.run_list, name="runs"),
    path("runs/<uuid:code>/", views.run_detail, name="run_detail"),
    path("runs/<uuid:code>/trace.json", views.run_trace_json, name="run_trace_json"),
    path("runs/<uuid:code>/spans/<str:span_id>/", views.span_detail, name="span_detail"),
    path("runs/<uuid:code>/spans/<str:span_id>.json", views.span_json, name="span_json"),
    path(
        "runs/<uuid:code>/spans/<str:span_id>/<str:part>/",
        views.span_part_view,
        name="span_part",
    ),
]
