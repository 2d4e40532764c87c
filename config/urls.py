"""URL routes: the admin for now; the REST API and report pages come with later issues."""

from django.contrib import admin
from django.urls import path

urlpatterns = [
    path("admin/", admin.site.urls),
]
