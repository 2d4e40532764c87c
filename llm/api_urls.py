"""REST API routes under /api/ (namespace ``api``).

Collections: runs (with rerun and cancel actions and a run's clusters), clusters, summaries (with
regenerate), jobs (with cancel), calls; ``auth/token/``; the OpenAPI 3 schema at ``schema/`` and
its docs page at ``docs/``. Any other path under /api/ is a JSON 404.
"""

from django.urls import URLPattern, URLResolver, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from config.api_errors import api_not_found, safe_methods_only
from llm.api import (
    ApiRootView,
    JobViewSet,
    LLMCallViewSet,
    ProviderBatchViewSet,
    SummaryViewSet,
    TokenObtainView,
)
from llm.run_api import ClusterDetailView, RunClusterListView, RunViewSet

app_name = "api"

router = SimpleRouter()
router.register("runs", RunViewSet, basename="run")
router.register("summaries", SummaryViewSet, basename="summary")
router.register("jobs", JobViewSet, basename="job")
router.register("calls", LLMCallViewSet, basename="call")
router.register("batches", ProviderBatchViewSet, basename="batch")

urlpatterns: list[URLPattern | URLResolver] = [
    path("", ApiRootView.as_view(), name="root"),
    path("runs/<int:run_pk>/clusters/", RunClusterListView.as_view(), name="run-clusters"),
    path("clusters/<int:pk>/", ClusterDetailView.as_view(), name="cluster-detail"),
    path("auth/token/", TokenObtainView.as_view(), name="token"),
    path("schema/", safe_methods_only(SpectacularAPIView.as_view()), name="schema"),
    path(
        "docs/",
        safe_methods_only(SpectacularSwaggerView.as_view(url_name="api:schema")),
        name="docs",
    ),
    *router.urls,
    re_path(r"^", api_not_found),
]
