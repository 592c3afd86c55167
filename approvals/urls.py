from django.urls import path

from approvals import views

urlpatterns = [
    path("", views.approval_list, name="approvals"),
    path("count", views.approval_count, name="approvals_count"),
    path("history", views.approval_history, name="approvals_history"),
    path("<uuid:code>/", views.approval_detail, name="approval_detail"),
    path("<uuid:code>/approve", views.approval_approve, name="approval_approve"),
    path("<uuid:code>/reject", views.approval_reject, name="approval_reject"),
]
