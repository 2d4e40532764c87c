"""Read-only admin of provider batches (with their items) and of this deployment's identity,
which batch display names and custom ids carry."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from clustering.admin import ReadOnlyAdmin
from llm.models import BatchItem, Deployment, ProviderBatch


class BatchItemInline(admin.TabularInline):
    model = BatchItem
    fields = ("custom_id", "task", "kind", "attempt", "state", "error")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = False


@admin.register(ProviderBatch)
class ProviderBatchAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "job",
        "provider",
        "kind",
        "round",
        "state",
        "provider_state",
        "request_count",
        "completed_count",
        "failed_count",
        "submitted_at",
        "finished_at",
    )
    list_filter = ("state", "provider", "kind")
    search_fields = ("display_name", "provider_batch_id")
    inlines = [BatchItemInline]


@admin.register(Deployment)
class DeploymentAdmin(ReadOnlyAdmin):
    """This deployment's instance id, which batch display names and custom ids carry (created
    on first use; listing it here creates it if no batch has yet)."""

    list_display = ("instance_id", "created_at")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Deployment]:
        from llm.services.deployment import deployment_identity

        deployment_identity()
        return super().get_queryset(request)
