"""Read-only admin of the pipeline's work: generation jobs, their per-cluster tasks and the
provider call log."""

from __future__ import annotations

from django.contrib import admin

from clustering.admin import ReadOnlyAdmin
from llm.models import GenerationJob, LLMCall, SummaryTask


@admin.register(GenerationJob)
class GenerationJobAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "run",
        "scope",
        "status",
        "provider",
        "model",
        "total",
        "succeeded",
        "rejected",
        "failed",
        "skipped",
        "cost_usd",
        "unknown_outcome",
        "redrives",
        "progress_message",
    )
    list_filter = ("status", "scope", "provider", "mode")

    @admin.display(description="unknown outcome")
    def unknown_outcome(self, job: GenerationJob) -> str:
        """Calls whose worker died in flight and their projected cost (in the job's cost)."""
        if not job.unknown_calls:
            return "-"
        return f"{job.unknown_calls} call(s), ${job.unknown_cost_usd:.6f} projected (in cost)"


@admin.register(SummaryTask)
class SummaryTaskAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "job",
        "cluster",
        "state",
        "attempts",
        "deliveries",
        "redrives",
        "last_error",
        "updated_at",
    )
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
        "projected_cost_usd",
        "created_at",
    )
    list_filter = ("kind", "status", "provider", "model")
