"""Admin for datasets, runs, clusters and enrichment: read-only rows, plus the run actions of the
review desk (rerun, cancel).

Rows are written by the pipeline, never by hand: no admin here can add, edit or delete them.
Actions that change state call the services (``pipeline_rerun``, ``pipeline_cancel``) and need
the model's change permission.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Prefetch, QuerySet
from django.forms.utils import flatatt
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from clustering.domain.params import InvalidParameters
from clustering.domain.stability import stability_band
from clustering.services import UnknownDatasetError
from llm.models import GenerationJob, JobStatus
from llm.services.pipeline import ActiveRunConflict, pipeline_cancel, pipeline_rerun

from .models import Cluster, ClusteringRun, Dataset, TermEnrichment
from .selectors import dataset_licence_notice

#: (background, text, border) per badge class; the same class names style the report page.
BADGE_COLOURS: dict[str, tuple[str, str, str]] = {
    "status-validated": ("#1a7f37", "#ffffff", "#1a7f37"),
    "status-pending": ("#d29922", "#1f2328", "#d29922"),
    "status-rejected": ("#cf222e", "#ffffff", "#cf222e"),
    "status-none": ("#eaeef2", "#59636e", "#d1d9e0"),
    "verdict-accept": ("#dafbe1", "#116329", "#aceebb"),
    "verdict-low_confidence": ("#fff8c5", "#7d4e00", "#f5e0a0"),
    "verdict-reject": ("#ffebe9", "#a40e26", "#ffcecb"),
    "lock": ("#ddf4ff", "#0a3069", "#b6e3ff"),
    "run-pending": ("#0969da", "#ffffff", "#0969da"),
    "run-running": ("#0969da", "#ffffff", "#0969da"),
    "run-succeeded": ("#1a7f37", "#ffffff", "#1a7f37"),
    "run-failed": ("#cf222e", "#ffffff", "#cf222e"),
    "run-cancelled": ("#6e7781", "#ffffff", "#6e7781"),
    "confidence-high": ("#dafbe1", "#116329", "#4ac26b"),
    "confidence-medium": ("#fff8c5", "#7d4e00", "#d4a72c"),
    "confidence-low": ("#ffebe9", "#a40e26", "#ff8182"),
}


def badge(css_class: str, label: str, **attrs: Any) -> SafeString:
    """A coloured pill: ``<span class="badge <css_class>" ...>label</span>`` with inline colours
    (the admin has no stylesheet of ours) and extra HTML attributes, e.g. ``data_summary_id=3``
    becomes ``data-summary-id="3"``. Everything is escaped."""
    bg, fg, border = BADGE_COLOURS.get(css_class, ("#eaeef2", "#1f2328", "#d1d9e0"))
    extra = flatatt({k.replace("_", "-"): str(v) for k, v in attrs.items() if v is not None})
    return format_html(
        '<span class="badge {}"{} style="display:inline-block;padding:1px 9px;'
        "border-radius:999px;font-size:11px;font-weight:600;line-height:18px;white-space:nowrap;"
        'background:{};color:{};border:1px solid {}">{}</span>',
        css_class,
        extra,
        bg,
        fg,
        border,
        label,
    )


def acknowledgement_html(dataset: Dataset | None) -> SafeString:
    """The dataset's release and its own licence notice as a highlighted block (the HPO
    datasets' notice is the HPO acknowledgement the HPO asks for wherever its content is
    displayed; go-ndd's is the Gene Ontology and WikiPathways licences)."""
    if dataset is None:
        return format_html("{}", "—")
    return format_html(
        '<div class="licence-notice" style="border-left:4px solid #0969da;'
        'padding:6px 10px;background:rgba(9,105,218,.08)"><strong>{}</strong> · release {}'
        "<br>{}</div>",
        dataset.name or dataset.slug,
        dataset.release or "not recorded",
        dataset_licence_notice(dataset) or "no licence text recorded",
    )


class ReadOnlyAdmin(admin.ModelAdmin):
    """Viewing only: rows are written by the pipeline, never by hand."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ActionsOnlyAdmin(admin.ModelAdmin):
    """Read-only rows whose state changes only through admin actions that call services.

    The model's change permission is honoured at list level (so actions declared with
    ``permissions=["change"]`` are offered to users who hold it) and refused for a single
    object, which makes every change page a read-only view that cannot be posted.
    """

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None:
            return False
        return super().has_change_permission(request)

    def can_act(self, request: HttpRequest) -> bool:
        """The user holds the model's change permission (may run the review actions)."""
        return super().has_change_permission(request)


@admin.register(Dataset)
class DatasetAdmin(ReadOnlyAdmin):
    list_display = ("slug", "name", "kind", "builtin", "release", "entity_count", "term_count")
    list_filter = ("kind", "builtin")
    search_fields = ("slug", "name")
    readonly_fields = ("acknowledgement",)

    @admin.display(description="release and licence")
    def acknowledgement(self, obj: Dataset) -> SafeString:
        return acknowledgement_html(obj)


def _job_totals_html(job: GenerationJob | None) -> SafeString:
    if job is None:
        return format_html('<span style="color:#59636e">{}</span>', "not summarised")
    item = '<span style="white-space:nowrap{}">{}</span>'
    return format_html_join(
        " · ",
        item,
        [
            ("", format_html("<b>{}</b> total", job.total)),
            (";color:#1a7f37", f"{job.succeeded} succeeded"),
            (";color:#9a6700", f"{job.rejected} rejected"),
            (";color:#cf222e", f"{job.failed} failed"),
            ("", f"{job.skipped} skipped"),
        ],
    )


def _progress_html(current: int, total: int, message: str) -> SafeString:
    if total:
        return format_html(
            '<progress value="{}" max="{}" style="width:90px;vertical-align:middle"></progress> '
            "{}/{} {}",
            current,
            total,
            current,
            total,
            message,
        )
    return format_html("{}", message or "—")


@admin.register(ClusteringRun)
class ClusteringRunAdmin(ActionsOnlyAdmin):
    """Runs with their status, progress and summary totals; actions rerun and cancel."""

    list_display = (
        "id",
        "dataset",
        "cluster_type",
        "status_badge",
        "progress",
        "totals",
        "created_at",
        "finished_at",
        "report_link",
    )
    list_filter = ("status", "cluster_type", "dataset")
    list_select_related = ("dataset",)
    actions = ["rerun", "cancel"]
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "dataset",
                    "cluster_type",
                    "status_badge",
                    "progress",
                    "totals",
                    "report_link",
                    "acknowledgement",
                )
            },
        ),
        (
            "Clustering",
            {
                "fields": (
                    "params",
                    "intent",
                    "library_versions",
                    "modularity",
                    "n_features",
                    "n_edges",
                    "timings",
                    "attempts",
                    "redrives",
                    "error",
                    "created_at",
                    "started_at",
                    "heartbeat_at",
                    "finished_at",
                )
            },
        ),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[ClusteringRun]:
        return (
            super()
            .get_queryset(request)
            .prefetch_related(
                Prefetch(
                    "generation_jobs",
                    queryset=GenerationJob.objects.filter(scope=GenerationJob.Scope.RUN),
                    to_attr="run_jobs",
                )
            )
        )

    @staticmethod
    def _job(obj: ClusteringRun) -> GenerationJob | None:
        jobs = getattr(obj, "run_jobs", None)
        if jobs is None:
            return obj.generation_jobs.filter(scope=GenerationJob.Scope.RUN).first()
        return jobs[0] if jobs else None

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: ClusteringRun) -> SafeString:
        return badge(f"run-{obj.status}", obj.status, data_run_id=obj.pk)

    @admin.display(description="progress")
    def progress(self, obj: ClusteringRun) -> SafeString:
        job = self._job(obj)
        if obj.status in ("pending", "running") or job is None:
            return _progress_html(obj.progress_current, obj.progress_total, obj.progress_message)
        if job.status in (JobStatus.PENDING, JobStatus.RUNNING):
            return format_html(
                "summarising {}",
                _progress_html(job.progress_current, job.progress_total, job.progress_message),
            )
        return format_html("summaries {}", badge(f"run-{job.status}", job.status))

    @admin.display(description="summaries")
    def totals(self, obj: ClusteringRun) -> SafeString:
        return _job_totals_html(self._job(obj))

    @admin.display(description="report")
    def report_link(self, obj: ClusteringRun) -> SafeString:
        return format_html('<a href="{}">report</a>', reverse("reports:run", args=[obj.pk]))

    @admin.display(description="data source")
    def acknowledgement(self, obj: ClusteringRun) -> SafeString:
        return acknowledgement_html(obj.dataset)

    @admin.action(description="Rerun the selected runs (same parameters)", permissions=["change"])
    def rerun(self, request: HttpRequest, queryset: QuerySet[ClusteringRun]) -> None:
        """Recluster and resummarise each selected run; a run whose dataset and type still has
        an active run is reported and left alone."""
        started: list[str] = []
        for run_id in queryset.order_by("id").values_list("pk", flat=True):
            try:
                new = pipeline_rerun(run_id=run_id)
            except ActiveRunConflict as exc:
                self.message_user(
                    request,
                    f"Run {run_id} was not rerun: run {exc.run_id} on the same dataset and "
                    "cluster type is still active. Cancel it or wait for it to finish.",
                    messages.WARNING,
                )
            except (InvalidParameters, UnknownDatasetError) as exc:
                self.message_user(request, f"Run {run_id} was not rerun: {exc}", messages.ERROR)
            else:
                started.append(f"run {new.pk} (from run {run_id})")
        if started:
            self.message_user(request, f"Started {', '.join(started)}.", messages.SUCCESS)

    @admin.action(description="Cancel the selected runs", permissions=["change"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[ClusteringRun]) -> None:
        """Cancel each selected run and its generation jobs; finished runs are unchanged."""
        changed: list[int] = []
        for run_id in queryset.order_by("id").values_list("pk", flat=True):
            before = ClusteringRun.objects.values_list("status", flat=True).get(pk=run_id)
            active_jobs = GenerationJob.objects.filter(
                run_id=run_id, status__in=[JobStatus.PENDING, JobStatus.RUNNING]
            ).exists()
            run = pipeline_cancel(run_id=run_id)
            if before != run.status or active_jobs:
                changed.append(run_id)
        if changed:
            self.message_user(
                request,
                f"Cancelled {len(changed)} run(s): {', '.join(map(str, changed))}. "
                "Clusters not yet summarised are skipped.",
                messages.SUCCESS,
            )
        else:
            self.message_user(
                request, "Nothing to cancel: the selected runs had finished.", messages.INFO
            )


def cluster_quality_html(cluster: Cluster) -> SafeString:
    """Derived confidence, stability, specificity, modularity z, signature members, inheritance
    and syndromicity of a cluster, as one small table."""
    muted = "color:#59636e"
    stability = (
        f"{cluster.stability:.2f} ({stability_band(cluster.stability)})"
        if cluster.stability is not None
        else "not measured"
    )
    traits = cluster.traits or {}
    modes = [
        f"{m.get('abbreviation') or m.get('name')} {m.get('share', 0):.0%}"
        + (f" ({m['direction']})" if m.get("direction") else "")
        for m in (traits.get("inheritance") or {}).get("modes", [])
        if m.get("supported")
    ]
    syndromicity = traits.get("syndromicity") or {}
    rows = [
        ("derived confidence", cluster.derived_confidence or "-"),
        ("stability (subsample Jaccard)", stability),
        (
            "specificity (Dice of the best term)",
            f"{cluster.specificity:.2f} ({cluster.specificity_term})"
            if cluster.specificity is not None
            else "-",
        ),
        (
            "modularity z (rewired graphs)",
            f"{cluster.modularity_z:.1f}" if cluster.modularity_z is not None else "-",
        ),
        (
            "signature members",
            ", ".join(m["symbol"] for m in (cluster.signature_members or [])[:10]) or "-",
        ),
        ("inheritance (supported modes)", ", ".join(modes) or "-"),
        (
            "syndromicity",
            f"{syndromicity.get('call', '-')}: {syndromicity.get('isolated_share', 0):.0%} "
            f"NDD-predominant (dataset {syndromicity.get('dataset_isolated_share', 0):.0%})"
            if syndromicity
            else "-",
        ),
    ]
    return format_html(
        '<table class="cluster-quality" style="border:0">{}</table>',
        format_html_join(
            "",
            '<tr><td style="padding:2px 12px 2px 0;{}">{}</td><td>{}</td></tr>',
            ((muted, label, value) for label, value in rows),
        ),
    )


class TermEnrichmentInline(admin.TabularInline):
    model = TermEnrichment
    fields = (
        "direction",
        "evidence_rank",
        "category",
        "term_id",
        "term_name",
        "overlap",
        "term_size",
        "fdr",
        "fold_enrichment",
        "represents",
        "hidden_by",
    )
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    ordering = ("direction", "evidence_rank", "fdr")


@admin.register(Cluster)
class ClusterAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "run",
        "number",
        "size",
        "derived_confidence",
        "stability",
        "composition_hash",
    )
    list_filter = ("run__dataset", "run__cluster_type", "derived_confidence")
    search_fields = ("composition_hash", "members__icontains")
    readonly_fields = ("quality_display", "member_list", "acknowledgement")
    inlines = [TermEnrichmentInline]

    @admin.display(description="quality")
    def quality_display(self, obj: Cluster) -> SafeString:
        return cluster_quality_html(obj)

    @admin.display(description="member symbols")
    def member_list(self, obj: Cluster) -> SafeString:
        return format_html_join(" ", "<code>{}</code>", ((s,) for s in obj.member_symbols))

    @admin.display(description="data source")
    def acknowledgement(self, obj: Cluster) -> SafeString:
        return acknowledgement_html(obj.run.dataset)


@admin.register(TermEnrichment)
class TermEnrichmentAdmin(ReadOnlyAdmin):
    list_display = ("cluster", "category", "term_id", "term_name", "overlap", "fdr")
    list_filter = ("category",)
    search_fields = ("term_id", "term_name")
