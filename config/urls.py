"""URL routes: admin, REST API (with OpenAPI schema and docs) and run report pages."""

from django.contrib import admin
from django.urls import include, path

# the review desk needs the width of the page for its list (the app index stays one click away)
admin.site.enable_nav_sidebar = False

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("llm.api_urls")),
    path("reports/", include("clustering.report_urls")),
]
