"""REST API views for summaries, generation jobs and provider calls, plus the API's shared
policies (permissions, throttles, base view set) that :mod:`llm.run_api` (runs and clusters)
uses too.

Who may do what (see README, "REST API"):

* read runs, clusters, jobs and summaries: any authenticated user; anonymous users too while
  ``settings.API_ANONYMOUS_READ`` is true, and then only VALIDATED summaries;
* create, rerun and cancel runs, cancel jobs: authenticated users with the permission
  ``clustering.add_clusteringrun``, or staff;
* override a summary's status, regenerate a summary, read provider calls: staff only.

No anonymous request reaches a service that writes, so none can cause a provider call.
Writes are throttled per user with the ``write`` rate, anonymous reads with the ``anon`` rate.
Every error has the shape of :mod:`config.api_errors`.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.urls import reverse
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import mixins, serializers, status
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.filters import OrderingFilter, SearchFilter
from rest_framework.parsers import JSONParser
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle
from rest_framework.views import APIView
from rest_framework.viewsets import GenericViewSet

from config.api_errors import UniformErrorsMixin
from llm.filters import JobFilter, LLMCallFilter, ProviderBatchFilter, SummaryFilter
from llm.models import ClusterSummary, GenerationJob, LLMCall, ProviderBatch
from llm.selectors import job_list, llm_call_list, summary_detail_list, summary_list
from llm.serializers import (
    ErrorSerializer,
    GenerationJobSerializer,
    LLMCallSerializer,
    ProviderBatchSerializer,
    SummaryDetailSerializer,
    SummaryListSerializer,
    SummaryRegenerateSerializer,
    SummaryStatusUpdateSerializer,
)
from llm.services.review import ReviewError, job_cancel, summary_regenerate, summary_status_set

# --- permissions ------------------------------------------------------------------------------

RUN_PERMISSION = "clustering.add_clusteringrun"


def _authenticated(request: Request) -> bool:
    return bool(request.user and request.user.is_authenticated)


class CanRead(BasePermission):
    """Safe methods only: authenticated users, and anonymous users while
    ``API_ANONYMOUS_READ`` is true (what they see is narrowed by the selectors)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if request.method not in SAFE_METHODS:
            return False
        return _authenticated(request) or bool(getattr(settings, "API_ANONYMOUS_READ", True))


class CanManageRuns(BasePermission):
    """Authenticated staff, or authenticated users with ``clustering.add_clusteringrun``."""

    message = "Starting, rerunning or cancelling runs needs the permission to add clustering runs."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not _authenticated(request):
            return False
        return bool(user.is_staff or user.has_perm(RUN_PERMISSION))


class IsStaff(BasePermission):
    """Authenticated staff users only."""

    message = "Only staff may do this."

    def has_permission(self, request: Request, view: Any) -> bool:
        return _authenticated(request) and bool(request.user.is_staff)


# --- throttles --------------------------------------------------------------------------------


class _LiveRateMixin:
    """Read the rate from the current settings (DRF reads it once, at import)."""

    scope: str

    def get_rate(self) -> str | None:
        rates = api_settings.DEFAULT_THROTTLE_RATES or {}
        return rates.get(self.scope)


class WriteRateThrottle(_LiveRateMixin, UserRateThrottle):
    """Unsafe methods, per user (per address when anonymous), at the ``write`` rate."""

    scope = "write"

    def allow_request(self, request: Request, view: Any) -> bool:
        if request.method in SAFE_METHODS:
            return True
        return super().allow_request(request, view)


class AnonReadThrottle(_LiveRateMixin, AnonRateThrottle):
    """Anonymous requests, per address, at the ``anon`` rate."""

    scope = "anon"


# --- base view set and schema helpers ---------------------------------------------------------


class ApiViewSet(UniformErrorsMixin, GenericViewSet):
    """Base of the API's view sets: uniform errors, throttles, JSON bodies, filters and ordering
    (search where a view declares it), and permissions per action.

    ``action_permissions`` maps an action name to its permission classes; actions not listed
    need :class:`CanRead`.
    """

    throttle_classes = [WriteRateThrottle, AnonReadThrottle]
    parser_classes = [JSONParser]
    filter_backends = [DjangoFilterBackend, OrderingFilter]
    action_permissions: dict[str, list[type[BasePermission]]] = {}

    def get_permissions(self) -> list[BasePermission]:
        if self.action is None:
            # a method this view does not route: let it answer 405 rather than 401/403
            return []
        classes = self.action_permissions.get(self.action, [CanRead])
        return [cls() for cls in classes]

    def filter_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        # query-string filters select rows of a list; they never hide the object of a detail URL
        if self.action != "list":
            return queryset
        return super().filter_queryset(queryset)


_ERROR_TEXT = {
    400: "Invalid request: `errors` names each bad field.",
    401: "Not authenticated.",
    403: "Not allowed.",
    404: "Not found.",
    409: "Conflict with the current state.",
    413: "Request body too large.",
    415: "Unsupported Content-Type of the request body (send JSON).",
    429: "Throttled; see Retry-After.",
}


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    """OpenAPI responses for error status codes, all with the body of :class:`ErrorSerializer`."""
    return {code: OpenApiResponse(ErrorSerializer, description=_ERROR_TEXT[code]) for code in codes}


READ_ERRORS = (401, 403)
WRITE_ERRORS = (400, 401, 403, 413, 415, 429)


def field_errors(errors: dict[str, str]) -> ValidationError:
    """A 400 with one message per field, from a service's ``field -> message`` dict."""
    return ValidationError({field: [message] for field, message in errors.items()})


# --- summaries --------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(
        summary="List summaries",
        description=(
            "Current summaries by default (is_current=false for history). Anonymous readers see "
            "validated summaries only. `search` matches words of the summary text or member "
            "symbols (substring); `gene` an exact member symbol."
        ),
        responses={200: SummaryListSerializer(many=True), **error_responses(400, *READ_ERRORS)},
    ),
    retrieve=extend_schema(
        summary="A summary with its audit trail",
        responses={200: SummaryDetailSerializer, **error_responses(*READ_ERRORS, 404)},
    ),
    partial_update=extend_schema(
        summary="Set a summary's validation status (staff)",
        description=(
            "Records a ValidationEvent (user, time, from, to, note) and locks the status against "
            "reruns of the same composition."
        ),
        request=SummaryStatusUpdateSerializer,
        responses={200: SummaryDetailSerializer, **error_responses(*WRITE_ERRORS, 404)},
    ),
    regenerate=extend_schema(
        summary="Regenerate a summary now (staff)",
        description=(
            "Creates a generation job for the summary's cluster (forced), enqueued after commit; "
            "lifts the curator lock (recorded). Answers 202 with the job; poll its `url`."
        ),
        request=SummaryRegenerateSerializer,
        responses={202: GenerationJobSerializer, **error_responses(*WRITE_ERRORS, 404)},
    ),
)
class SummaryViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    """Summaries (the composition cache) and their human review."""

    filterset_class = SummaryFilter
    filter_backends = [DjangoFilterBackend, SearchFilter, OrderingFilter]
    search_fields = ["summary_text", "members"]
    ordering_fields = ["generated_at", "id", "validation_status", "cost_usd"]
    ordering = ["-generated_at", "-id"]
    queryset = ClusterSummary.objects.none()  # for the schema; get_queryset filters per user
    http_method_names = ["get", "post", "patch", "head", "options"]
    action_permissions = {"partial_update": [IsStaff], "regenerate": [IsStaff]}

    def get_queryset(self) -> QuerySet[ClusterSummary]:
        if self.action == "list":
            return summary_list(user=self.request.user)
        return summary_detail_list(user=self.request.user)

    def get_serializer_class(self) -> type[serializers.BaseSerializer]:
        return SummaryListSerializer if self.action == "list" else SummaryDetailSerializer

    def _detail(self, pk: int) -> dict[str, Any]:
        summary = summary_detail_list(user=self.request.user).get(pk=pk)
        return dict(SummaryDetailSerializer(summary, context=self.get_serializer_context()).data)

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Set the validation status as a curator (``summary_status_set``)."""
        summary = self.get_object()
        payload = SummaryStatusUpdateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        try:
            summary_status_set(
                summary_id=summary.pk,
                status=payload.validated_data["validation_status"],
                user=request.user,
                note=payload.validated_data["note"],
            )
        except ReviewError as exc:
            raise field_errors({exc.field: exc.message}) from None
        return Response(self._detail(summary.pk))

    @action(detail=True, methods=["post"])
    def regenerate(self, request: Request, pk: str | None = None) -> Response:
        """Regenerate one summary (``summary_regenerate``); 202 with the new job."""
        summary = self.get_object()
        payload = SummaryRegenerateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        try:
            job = summary_regenerate(
                summary_id=summary.pk,
                user=request.user,
                provider=payload.validated_data.get("provider"),
            )
        except ReviewError as exc:
            raise field_errors({exc.field: exc.message}) from None
        job = job_list().get(pk=job.pk)
        data = GenerationJobSerializer(job, context=self.get_serializer_context()).data
        return Response(
            data, status=status.HTTP_202_ACCEPTED, headers={"Location": str(data["url"])}
        )


# --- generation jobs --------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(
        summary="List generation jobs",
        responses={200: GenerationJobSerializer(many=True), **error_responses(400, *READ_ERRORS)},
    ),
    retrieve=extend_schema(
        summary="A generation job: status, progress, totals, tokens, cost",
        responses={200: GenerationJobSerializer, **error_responses(*READ_ERRORS, 404)},
    ),
    cancel=extend_schema(
        summary="Cancel a generation job",
        description=(
            "Clusters not yet started end skipped; calls in flight finish. A finished job is "
            "returned unchanged."
        ),
        request=None,
        responses={200: GenerationJobSerializer, **error_responses(*WRITE_ERRORS, 404)},
    ),
)
class JobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    """Generation jobs: a run's summarisation (scope run) or a curator's regeneration."""

    queryset = GenerationJob.objects.none()
    serializer_class = GenerationJobSerializer
    filterset_class = JobFilter
    ordering_fields = ["created_at", "id"]
    ordering = ["-created_at", "-id"]
    action_permissions = {"cancel": [CanManageRuns]}

    def get_queryset(self) -> QuerySet[GenerationJob]:
        return job_list()

    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        """Cancel the job (``job_cancel``)."""
        job = self.get_object()
        job_cancel(job_id=job.pk)
        fresh = job_list().get(pk=job.pk)
        return Response(GenerationJobSerializer(fresh, context=self.get_serializer_context()).data)


# --- provider calls ---------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(
        summary="The provider call log (staff)",
        responses={200: LLMCallSerializer(many=True), **error_responses(400, *READ_ERRORS)},
    ),
    retrieve=extend_schema(
        summary="One provider call (staff)",
        responses={200: LLMCallSerializer, **error_responses(*READ_ERRORS, 404)},
    ),
)
class LLMCallViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    """One row per provider call, with tokens, latency, cost and errors (read-only, staff)."""

    queryset = LLMCall.objects.none()
    serializer_class = LLMCallSerializer
    filterset_class = LLMCallFilter
    ordering_fields = ["created_at", "id", "latency_seconds", "cost_usd"]
    ordering = ["-created_at", "-id"]
    action_permissions = {"list": [IsStaff], "retrieve": [IsStaff]}

    def get_queryset(self) -> QuerySet[LLMCall]:
        return llm_call_list()


@extend_schema_view(
    list=extend_schema(
        summary="Provider batches (staff)",
        responses={200: ProviderBatchSerializer(many=True), **error_responses(400, *READ_ERRORS)},
    ),
    retrieve=extend_schema(
        summary="One provider batch (staff)",
        responses={200: ProviderBatchSerializer, **error_responses(*READ_ERRORS, 404)},
    ),
)
class ProviderBatchViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    """Batches submitted to providers' batch APIs, with their state and counts (read-only,
    staff)."""

    queryset = ProviderBatch.objects.none()
    serializer_class = ProviderBatchSerializer
    filterset_class = ProviderBatchFilter
    ordering_fields = ["created_at", "id"]
    ordering = ["-created_at", "-id"]
    action_permissions = {"list": [IsStaff], "retrieve": [IsStaff]}

    def get_queryset(self) -> QuerySet[ProviderBatch]:
        return ProviderBatch.objects.all()


# --- authentication and the API root ----------------------------------------------------------


class TokenObtainView(UniformErrorsMixin, ObtainAuthToken):
    """``POST /api/auth/token/`` with username and password: the user's API token, used as
    ``Authorization: Token <key>``. Throttled at the ``write`` rate per address."""

    throttle_classes = [WriteRateThrottle]

    @extend_schema(
        summary="Obtain an API token",
        request=inline_serializer(
            "TokenRequest",
            fields={"username": serializers.CharField(), "password": serializers.CharField()},
        ),
        responses={
            200: inline_serializer("TokenResponse", fields={"token": serializers.CharField()}),
            **error_responses(400, 413, 415, 429),
        },
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().post(request, *args, **kwargs)


class ApiRootView(UniformErrorsMixin, APIView):
    """``GET /api/``: links to the collections, the schema and the docs."""

    permission_classes: list[type[BasePermission]] = []
    throttle_classes = [AnonReadThrottle]

    @extend_schema(exclude=True, responses=OpenApiTypes.OBJECT)
    def get(self, request: Request) -> Response:
        names = {
            "runs": "api:run-list",
            "summaries": "api:summary-list",
            "jobs": "api:job-list",
            "calls": "api:call-list",
            "batches": "api:batch-list",
            "token": "api:token",
            "schema": "api:schema",
            "docs": "api:docs",
        }
        return Response({key: request.build_absolute_uri(reverse(n)) for key, n in names.items()})
