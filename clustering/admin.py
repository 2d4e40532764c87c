"""Read-only admin for datasets, runs, clusters and enrichment (review actions come later)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .models import Cluster, ClusteringRun, Dataset, TermEnrichment


class ReadOnlyAdmin(admin.ModelAdmin):
    """Viewing only: rows are written by the pipeline, never by hand."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Dataset)
class DatasetAdmin(ReadOnlyAdmin):
    list_display = ("slug", "name", "kind", "builtin", "release", "entity_count", "term_count")
    list_filter = ("kind", "builtin")
    search_fields = ("slug", "name")


@admin.register(ClusteringRun)
class ClusteringRunAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "dataset",
        "cluster_type",
        "status",
        "progress_message",
        "modularity",
        "created_at",
        "finished_at",
    )
    list_filter = ("status", "cluster_type", "dataset")


class TermEnrichmentInline(admin.TabularInline):
    model = TermEnrichment
    fields = ("category", "term_id", "term_name", "overlap", "term_size", "fdr", "fold_enrichment")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    ordering = ("fdr",)


@admin.register(Cluster)
class ClusterAdmin(ReadOnlyAdmin):
    list_display = ("id", "run", "number", "size", "composition_hash")
    list_filter = ("run__dataset", "run__cluster_type")
    search_fields = ("composition_hash", "members__icontains")
    inlines = [TermEnrichmentInline]


@admin.register(TermEnrichment)
class TermEnrichmentAdmin(ReadOnlyAdmin):
    list_display = ("cluster", "category", "term_id", "term_name", "overlap", "fdr")
    list_filter = ("category",)
    search_fields = ("term_id", "term_name")
