from django.urls import path

from traces import views

urlpatterns = [
    path("", views.run_list, name="runs"),
    path("runs/<uuid:code>/", views.run_detail, name="run_detail"),
]
