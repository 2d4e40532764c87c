"""REST API views for clustering runs and clusters, which start and show their summaries
(permissions, throttles and the base view set: :mod:`llm.api`).

* ``GET /api/runs/``, ``GET /api/runs/{id}/``: runs with stage, progress, totals, tokens, cost;
* ``POST /api/runs/``: start the pipeline (``pipeline_start``) -> 202 with the run, 409 while a
  run of the same dataset and cluster type is active (the body's ``active_run`` is its id);
* ``POST /api/runs/{id}/rerun/``: ``pipeline_rerun`` -> 202 with the new run, 409 while a run of
  the same dataset and cluster type is active;
* ``POST /api/runs/{id}/cancel/``: ``pipeline_cancel`` -> 200 with the run;
* ``GET /api/runs/{id}/clusters/``: the run's clusters with top terms and current summaries;
* ``GET /api/clusters/{id}/``: a cluster with members, enrichment (FDR), dataset release and
  licence, and its current summary.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import generics, mixins, status
from rest_framework.decorators import action
from rest_framework.filters import OrderingFilter
from rest_framework.request import Request
from rest_framework.response import Response

from clustering.domain.params import InvalidParameters
from clustering.models import Cluster, ClusteringRun, TermEnrichment
from clustering.selectors import cluster_display_terms, cluster_list
from clustering.services import UnknownDatasetError
from config.api_errors import Conflict, UniformErrorsMixin
from llm.api import (
    READ_ERRORS,
    WRITE_ERRORS,
    AnonReadThrottle,
    ApiViewSet,
    CanManageRuns,
    CanRead,
    WriteRateThrottle,
    error_responses,
    field_errors,
)
from llm.filters import RunFilter
from llm.providers.registry import ProviderNotConfigured
from llm.run_serializers import (
    ClusterDetailSerializer,
    ClusteringRunSerializer,
    ClusterListSerializer,
    RunCreateSerializer,
    RunRerunSerializer,
)
from llm.selectors import run_list, summary_current_for_clusters
from llm.services.pipeline import (
    ActiveRunConflict,
    pipeline_cancel,
    pipeline_rerun,
    pipeline_start,
)

_ACCEPTED = (
    "Answers 202 with the run at once; clustering and summarising go on in the background "
    "(enqueued after commit). Poll the run's `url`: `stage`, `progress` and `totals` follow the "
    "pipeline, and `job.url` is the summarisation job once it is planned."
)
_ONE_ACTIVE = (
    " One run per dataset and cluster type may be active (clustering or summarising): while one "
    "is, the answer is 409 with its id in `active_run`."
)


def param_errors(exc: InvalidParameters) -> dict[str, str]:
    """The errors of a run's parameters keyed by their request path (``params.k``);
    ``cluster_type`` stays at the top level."""
    return {
        name if name == "cluster_type" else f"params.{name}": message
        for name, message in exc.errors.items()
    }


def active_conflict(exc: ActiveRunConflict, dataset: str) -> Conflict:
    """409 naming the active run (``active_run`` in the body is its id)."""
    return Conflict(
        f"Run {exc.run_id} of dataset {dataset} is still active; wait for it to finish or "
        "cancel it.",
        extra={"active_run": exc.run_id},
    )


@extend_schema_view(
    list=extend_schema(
        summary="List clustering runs",
        responses={200: ClusteringRunSerializer(many=True), **error_responses(400, *READ_ERRORS)},
    ),
    retrieve=extend_schema(
        summary="A run: status, stage, progress, totals, tokens and cost",
        responses={200: ClusteringRunSerializer, **error_responses(*READ_ERRORS, 404)},
    ),
    create=extend_schema(
        summary="Start a clustering run and its summaries",
        description=_ACCEPTED + _ONE_ACTIVE,
        request=RunCreateSerializer,
        responses={202: ClusteringRunSerializer, **error_responses(*WRITE_ERRORS, 409)},
    ),
    rerun=extend_schema(
        summary="Rerun: recluster with the same parameters and summarise the misses",
        description=_ACCEPTED + _ONE_ACTIVE,
        request=RunRerunSerializer,
        responses={202: ClusteringRunSerializer, **error_responses(*WRITE_ERRORS, 404, 409)},
    ),
    cancel=extend_schema(
        summary="Cancel a run and its summarisation",
        description="A finished run is returned unchanged.",
        request=None,
        responses={200: ClusteringRunSerializer, **error_responses(*WRITE_ERRORS, 404)},
    ),
)
class RunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    """Clustering runs and the whole pipeline behind them."""

    queryset = ClusteringRun.objects.none()
    serializer_class = ClusteringRunSerializer
    filterset_class = RunFilter
    ordering_fields = ["created_at", "id", "finished_at"]
    ordering = ["-created_at", "-id"]
    action_permissions = {
        "create": [CanManageRuns],
        "rerun": [CanManageRuns],
        "cancel": [CanManageRuns],
    }

    def get_queryset(self) -> QuerySet[ClusteringRun]:
        return run_list()

    def _accepted(self, run_id: int) -> Response:
        data = self.get_serializer(run_list().get(pk=run_id)).data
        return Response(
            data, status=status.HTTP_202_ACCEPTED, headers={"Location": str(data["url"])}
        )

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Validate the payload and start the pipeline (``pipeline_start``)."""
        payload = RunCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        try:
            run = pipeline_start(
                dataset_slug=data["dataset"],
                params=data["params"],
                cluster_type=data.get("cluster_type"),
                provider=data.get("provider"),
                force=data["force"],
            )
        except UnknownDatasetError as exc:
            raise field_errors({"dataset": str(exc)}) from None
        except InvalidParameters as exc:
            raise field_errors(param_errors(exc)) from None
        except ProviderNotConfigured as exc:
            raise field_errors({"provider": str(exc)}) from None
        except ActiveRunConflict as exc:
            raise active_conflict(exc, data["dataset"]) from None
        return self._accepted(run.pk)

    @action(detail=True, methods=["post"])
    def rerun(self, request: Request, pk: str | None = None) -> Response:
        """Rerun the run (``pipeline_rerun``)."""
        old = self.get_object()
        payload = RunRerunSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        try:
            run = pipeline_rerun(
                run_id=old.pk,
                provider=payload.validated_data.get("provider"),
                force=payload.validated_data["force"],
            )
        except ActiveRunConflict as exc:
            raise active_conflict(exc, old.dataset.slug) from None
        except InvalidParameters as exc:
            raise field_errors(param_errors(exc)) from None
        except ProviderNotConfigured as exc:
            raise field_errors({"provider": str(exc)}) from None
        return self._accepted(run.pk)

    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        """Cancel the run and its generation jobs (``pipeline_cancel``)."""
        run = self.get_object()
        pipeline_cancel(run_id=run.pk)
        return Response(self.get_serializer(run_list().get(pk=run.pk)).data)


def _cluster_context(view: Any, clusters: list[Cluster]) -> dict[str, Any]:
    context: dict[str, Any] = view.get_serializer_context()
    context["display_terms"] = cluster_display_terms(clusters=clusters)
    context["summaries"] = summary_current_for_clusters(clusters=clusters, user=view.request.user)
    return context


@extend_schema_view(
    get=extend_schema(
        summary="Clusters of a run",
        description=(
            "By number; each with member symbols, up to three non-redundant top terms and the "
            "current summary of its composition (null when there is none the reader may see)."
        ),
        responses={200: ClusterListSerializer(many=True), **error_responses(*READ_ERRORS, 404)},
    )
)
class RunClusterListView(UniformErrorsMixin, generics.ListAPIView):
    """``GET /api/runs/{run_pk}/clusters/``."""

    serializer_class = ClusterListSerializer
    permission_classes = [CanRead]
    throttle_classes = [WriteRateThrottle, AnonReadThrottle]
    filter_backends = [OrderingFilter]
    ordering_fields = ["number", "size"]
    ordering = ["number"]
    queryset = Cluster.objects.none()

    def get_queryset(self) -> QuerySet[Cluster]:
        run = get_object_or_404(
            ClusteringRun.objects.select_related("dataset"), pk=self.kwargs["run_pk"]
        )
        return cluster_list(run=run).select_related("run")

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(queryset)
        clusters = list(page if page is not None else queryset)
        serializer = ClusterListSerializer(
            clusters, many=True, context=_cluster_context(self, clusters)
        )
        if page is not None:
            return self.get_paginated_response(serializer.data)
        return Response(serializer.data)


@extend_schema_view(
    get=extend_schema(
        summary="A cluster with its enrichment and current summary",
        responses={
            200: ClusterDetailSerializer,
            **error_responses(*READ_ERRORS, 404),
        },
    )
)
class ClusterDetailView(UniformErrorsMixin, generics.RetrieveAPIView):
    """``GET /api/clusters/{pk}/``."""

    serializer_class = ClusterDetailSerializer
    permission_classes = [CanRead]
    throttle_classes = [WriteRateThrottle, AnonReadThrottle]
    queryset = Cluster.objects.select_related("run__dataset").prefetch_related(
        Prefetch("terms", queryset=TermEnrichment.objects.order_by("p_value", "term_id"))
    )

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        cluster = self.get_object()
        serializer = ClusterDetailSerializer(cluster, context=_cluster_context(self, [cluster]))
        return Response(serializer.data)
