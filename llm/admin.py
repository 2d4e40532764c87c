"""Read-only admin for summaries, jobs and provider calls (the review desk comes with issue 4)."""

from __future__ import annotations

from django.contrib import admin

from clustering.admin import ReadOnlyAdmin

from .models import ClusterSummary, GenerationJob, LLMCall, SummaryTask, ValidationEvent


class ValidationEventInline(admin.TabularInline):
    model = ValidationEvent
    fields = ("created_at", "source", "user", "from_status", "to_status", "note")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False


@admin.register(ClusterSummary)
class ClusterSummaryAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "cluster_type",
        "dataset",
        "validation_status",
        "judge_verdict",
        "model",
        "prompt_version",
        "generated_at",
        "is_current",
    )
    list_filter = ("validation_status", "judge_verdict", "cluster_type", "model", "is_current")
    search_fields = ("summary_text", "members__icontains", "composition_hash")
    inlines = [ValidationEventInline]


@admin.register(GenerationJob)
class GenerationJobAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "run",
        "status",
        "provider",
        "model",
        "total",
        "succeeded",
        "rejected",
        "failed",
        "skipped",
        "cost_usd",
        "progress_message",
    )
    list_filter = ("status", "provider", "mode")


@admin.register(SummaryTask)
class SummaryTaskAdmin(ReadOnlyAdmin):
    list_display = ("id", "job", "cluster", "state", "attempts", "last_error", "updated_at")
    list_filter = ("state",)


@admin.register(LLMCall)
class LLMCallAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "kind",
        "provider",
        "model",
        "status",
        "attempt",
        "try_number",
        "input_tokens",
        "output_tokens",
        "latency_seconds",
        "cost_usd",
        "created_at",
    )
    list_filter = ("kind", "status", "provider", "model")
