"""Run report pages under /reports/: the list of runs and one page per run."""

from django.urls import URLPattern, URLResolver, path

from . import views

app_name = "reports"

urlpatterns: list[URLPattern | URLResolver] = [
    path("", views.report_index, name="index"),
    path("runs/<int:run_id>/", views.run_report, name="run"),
]
