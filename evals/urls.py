from django.urls import path

from evals import views

urlpatterns = [
    path("runs/<uuid:code>/compare/", views.run_compare, name="run_compare"),
    path("runs/<uuid:code>/replay/", views.run_replay, name="run_replay"),
    path("runs/<uuid:code>/regression/", views.case_new, name="case_new"),
    path("evals/", views.eval_list, name="evals"),
    path("evals/runs/<uuid:code>/", views.eval_detail, name="eval_detail"),
    path("evals/cases/<uuid:code>/", views.case_edit, name="case_edit"),
    path("evals/shadow/", views.shadow_summary, name="shadow_summary"),
]
