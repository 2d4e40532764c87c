"""URL routes: admin, REST API (with OpenAPI schema and docs) and run report pages."""

from django.contrib import admin
from django.urls import include, path, re_path

from config.api_errors import api_not_found

# the review desk needs the width of the page for its list (the app index stays one click away)
admin.site.enable_nav_sidebar = False

urlpatterns = [
    path("admin/", admin.site.urls),
    re_path(r"^api$", api_not_found),  # not a redirect that would drop an unsafe method's body
    path("api/", include("llm.api_urls")),
    path("reports/", include("llm.reports.urls")),
]
