"""Run report pages under /reports/ (filled in by the report work)."""

from django.urls import URLPattern, URLResolver

urlpatterns: list[URLPattern | URLResolver] = []
