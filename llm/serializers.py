"""Serializers of the REST API for summaries, their audit trail, generation jobs and provider
calls, plus the error body (documentation only) and the strict-input base class.

Read-only status fields are plain strings whose allowed values are in their help text; enums
are declared on input fields only, so every OpenAPI enum has one name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.request import Request

from clustering.selectors import dataset_licence_notice
from llm.models import (
    ClusterSummary,
    GenerationJob,
    LLMCall,
    ProviderBatch,
    ValidationEvent,
    ValidationStatus,
)
from llm.providers.registry import PROVIDERS


def _viewer_is_authenticated(context: Mapping[str, Any]) -> bool:
    request: Request | None = context.get("request")
    return bool(request is not None and request.user and request.user.is_authenticated)


def _username(context: Mapping[str, Any], user: Any) -> str | None:
    """A user's name for authenticated readers; None for anonymous readers (curators' names
    are not published)."""
    if user is None or not _viewer_is_authenticated(context):
        return None
    return str(user.get_username())


class StrictInputSerializer(serializers.Serializer):
    """An input serializer that rejects keys it does not declare (``"unknown field"``), so a
    client never believes it changed something the endpoint ignores."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({key: ["Unknown field."] for key in unknown})
        return super().to_internal_value(data)


class ErrorSerializer(serializers.Serializer):
    """The body of every error response (documentation only)."""

    detail = serializers.CharField(help_text="One readable sentence.")
    code = serializers.CharField(
        help_text="invalid, not_authenticated, permission_denied, not_found, conflict, "
        "throttled, request_too_large, parse_error, method_not_allowed, server_error ..."
    )
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Request field -> messages (400 on a bad payload); {} otherwise.",
    )
    active_run = serializers.IntegerField(
        required=False, help_text="409 of a run start: the id of the run still active."
    )


class ProgressSerializer(serializers.Serializer):
    """Progress of a stage: ``current`` of ``total`` steps and a message."""

    current = serializers.IntegerField()
    total = serializers.IntegerField()
    message = serializers.CharField()


class TotalsSerializer(serializers.Serializer):
    """Cluster counts of a generation job by outcome."""

    total = serializers.IntegerField()
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField()
    skipped = serializers.IntegerField()
    rejected = serializers.IntegerField()


class UnknownOutcomeSerializer(serializers.Serializer):
    """Calls whose worker died while the request was in flight: the provider may have answered
    and billed them. ``projected_cost_usd`` is their projected cost (an upper bound from the
    prompt's token estimate), already included in the job's ``cost_usd``."""

    calls = serializers.IntegerField()
    projected_cost_usd = serializers.DecimalField(max_digits=14, decimal_places=6)


class TokensSerializer(serializers.Serializer):
    """Provider tokens as reported by the provider."""

    input = serializers.IntegerField()
    output = serializers.IntegerField()


# --- summaries --------------------------------------------------------------------------------


class ValidationEventSerializer(serializers.ModelSerializer):
    """One status change of a summary: who (``user`` is hidden from anonymous readers), when,
    from, to, note and source (judge | human | system)."""

    user = serializers.SerializerMethodField()
    source = serializers.CharField(read_only=True, help_text="judge | human | system")

    class Meta:
        model = ValidationEvent
        fields = ["id", "source", "user", "from_status", "to_status", "note", "created_at"]
        read_only_fields = fields

    def get_user(self, event: ValidationEvent) -> str | None:
        return _username(self.context, event.user)


class SummaryListSerializer(serializers.ModelSerializer):
    """A summary in lists: identity, text, tags, confidences, review state and provenance."""

    url = serializers.HyperlinkedIdentityField(view_name="api:summary-detail")
    dataset = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    members = serializers.ListField(
        child=serializers.CharField(), read_only=True, help_text="Member symbols."
    )
    tags = serializers.ListField(child=serializers.CharField(), read_only=True)
    confidence = serializers.CharField(
        read_only=True, help_text="The model's self-assessment: high | medium | low."
    )
    derived_confidence = serializers.CharField(
        read_only=True, help_text="From the enrichment statistics: high | medium | low."
    )

    class Meta:
        model = ClusterSummary
        fields = [
            "id",
            "url",
            "composition_hash",
            "cluster_type",
            "is_current",
            "dataset",
            "cluster",
            "members",
            "summary_text",
            "tags",
            "confidence",
            "derived_confidence",
            "validation_status",
            "judge_verdict",
            "human_locked",
            "provider",
            "model",
            "prompt_version",
            "generated_at",
        ]
        read_only_fields = fields


class SummaryDetailSerializer(SummaryListSerializer):
    """A summary with its structured content, judge verdict and scores, tokens and cost (USD),
    the curator's decision, the source data's release and licence notice, and the audit trail
    (``events``, oldest first)."""

    validated_by = serializers.SerializerMethodField()
    events = ValidationEventSerializer(many=True, read_only=True)
    dataset_release = serializers.SerializerMethodField()
    dataset_licence = serializers.SerializerMethodField()

    class Meta(SummaryListSerializer.Meta):
        fields = [
            *SummaryListSerializer.Meta.fields,
            "content",
            "validation_failures",
            "judge_reasoning",
            "judge_scores",
            "judge_model",
            "judge_prompt_version",
            "attempts",
            "input_tokens",
            "output_tokens",
            "cost_usd",
            "validated_by",
            "validated_at",
            "dataset_release",
            "dataset_licence",
            "events",
        ]
        read_only_fields = fields

    def get_validated_by(self, summary: ClusterSummary) -> str | None:
        return _username(self.context, summary.validated_by)

    def get_dataset_release(self, summary: ClusterSummary) -> str:
        return summary.dataset.release if summary.dataset is not None else ""

    def get_dataset_licence(self, summary: ClusterSummary) -> str:
        """The licence notice of the source data (e.g. the HPO acknowledgement)."""
        return dataset_licence_notice(summary.dataset)


class ClusterSummarySerializer(SummaryDetailSerializer):
    """The current summary of a cluster as shown in the cluster detail (no audit trail; follow
    ``url`` for it)."""

    class Meta(SummaryDetailSerializer.Meta):
        fields = [f for f in SummaryDetailSerializer.Meta.fields if f != "events"]
        read_only_fields = fields


class SummaryBriefSerializer(serializers.ModelSerializer):
    """The current summary of a cluster in cluster lists."""

    url = serializers.HyperlinkedIdentityField(view_name="api:summary-detail")

    class Meta:
        model = ClusterSummary
        fields = ["id", "url", "summary_text", "validation_status", "judge_verdict"]
        read_only_fields = fields


class SummaryStatusUpdateSerializer(StrictInputSerializer):
    """Input of ``PATCH /api/summaries/{id}/``: the curator's status and an optional note."""

    validation_status = serializers.ChoiceField(choices=ValidationStatus.choices)
    note = serializers.CharField(required=False, allow_blank=True, max_length=2000, default="")


class SummaryRegenerateSerializer(StrictInputSerializer):
    """Input of ``POST /api/summaries/{id}/regenerate/``; the provider defaults to
    ``LLM_PROVIDER``."""

    provider = serializers.ChoiceField(choices=list(PROVIDERS), required=False)


# --- jobs -------------------------------------------------------------------------------------


class GenerationJobSerializer(serializers.ModelSerializer):
    """A generation job: scope (run | clusters), mode (realtime | batch), status (pending |
    running | succeeded | failed | cancelled), provider and models, totals, progress, message,
    tokens and cost (USD; it includes the projected cost of calls of unknown outcome, counted
    in ``unknown_outcome``)."""

    url = serializers.HyperlinkedIdentityField(view_name="api:job-detail")
    run_url = serializers.HyperlinkedRelatedField(
        source="run", view_name="api:run-detail", read_only=True
    )
    scope = serializers.CharField(read_only=True, help_text="run | clusters")
    mode = serializers.CharField(read_only=True, help_text="realtime | batch")
    status = serializers.CharField(
        read_only=True, help_text="pending | running | succeeded | failed | cancelled"
    )
    totals = serializers.SerializerMethodField()
    progress = serializers.SerializerMethodField()
    tokens = serializers.SerializerMethodField()
    unknown_outcome = serializers.SerializerMethodField()
    requested_by = serializers.SerializerMethodField()

    class Meta:
        model = GenerationJob
        fields = [
            "id",
            "url",
            "run",
            "run_url",
            "scope",
            "mode",
            "status",
            "provider",
            "model",
            "judge_model",
            "force",
            "totals",
            "progress",
            "message",
            "tokens",
            "cost_usd",
            "unknown_outcome",
            "redrives",
            "requested_by",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    @extend_schema_field(TotalsSerializer)
    def get_totals(self, job: GenerationJob) -> dict[str, int]:
        return {
            "total": job.total,
            "succeeded": job.succeeded,
            "failed": job.failed,
            "skipped": job.skipped,
            "rejected": job.rejected,
        }

    @extend_schema_field(ProgressSerializer)
    def get_progress(self, job: GenerationJob) -> dict[str, Any]:
        return {
            "current": job.progress_current,
            "total": job.progress_total,
            "message": job.progress_message,
        }

    @extend_schema_field(TokensSerializer)
    def get_tokens(self, job: GenerationJob) -> dict[str, int]:
        return {"input": job.input_tokens, "output": job.output_tokens}

    @extend_schema_field(UnknownOutcomeSerializer)
    def get_unknown_outcome(self, job: GenerationJob) -> dict[str, Any]:
        return {"calls": job.unknown_calls, "projected_cost_usd": f"{job.unknown_cost_usd:.6f}"}

    def get_requested_by(self, job: GenerationJob) -> str | None:
        return _username(self.context, job.requested_by)


# --- provider calls ---------------------------------------------------------------------------


class LLMCallSerializer(serializers.ModelSerializer):
    """One provider call: kind (generate | judge), status (success | validation_failed |
    api_error | timeout | blocked | started | unknown), attempt and try, tokens, latency
    (seconds), cost (USD), projected cost (USD, written before the request left) and error
    (never contains a key). ``started``: in flight; ``unknown``: the worker died in flight, so
    the outcome is unknown and ``cost_usd`` is the projected cost."""

    kind = serializers.CharField(read_only=True, help_text="generate | judge")
    status = serializers.CharField(
        read_only=True,
        help_text=(
            "success | validation_failed | api_error | timeout | blocked | started (in flight) "
            "| unknown (worker died in flight; cost_usd is the projected cost)"
        ),
    )

    class Meta:
        model = LLMCall
        fields = [
            "id",
            "job",
            "task",
            "batch",
            "kind",
            "attempt",
            "try_number",
            "provider",
            "model",
            "model_version",
            "status",
            "input_tokens",
            "output_tokens",
            "latency_seconds",
            "cost_usd",
            "projected_cost_usd",
            "error_class",
            "error_message",
            "created_at",
        ]
        read_only_fields = fields


class ProviderBatchSerializer(serializers.ModelSerializer):
    """One provider batch: provider and its batch id, kind (generate | judge), our state
    (preparing | submitted | running | succeeded | failed | cancelled | expired | timed_out |
    collected) and the provider's own, request / completed / failed counts and timestamps."""

    class Meta:
        model = ProviderBatch
        fields = [
            "id",
            "job",
            "provider",
            "model",
            "kind",
            "round",
            "chunk_index",
            "display_name",
            "provider_batch_id",
            "state",
            "provider_state",
            "request_count",
            "completed_count",
            "failed_count",
            "submit_attempts",
            "poll_count",
            "error",
            "created_at",
            "submitted_at",
            "last_polled_at",
            "finished_at",
            "collected_at",
        ]
        read_only_fields = fields
