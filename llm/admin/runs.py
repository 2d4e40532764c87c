"""Admin of clustering runs with their summarisation: status, progress (the clustering's, then
the summarisation job's), summary totals, a link to the report, and the actions rerun and
cancel.

Registered here rather than in ``clustering.admin`` because what it shows and does is the
pipeline's (``clustering`` knows nothing of ``llm``). Rows are read-only; the actions call the
services (``pipeline_rerun``, ``pipeline_cancel``) and need the model's change permission.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from clustering.admin import ActionsOnlyAdmin, acknowledgement_html, badge
from clustering.domain.params import InvalidParameters
from clustering.models import ClusteringRun
from clustering.services import UnknownDatasetError
from llm.models import GenerationJob, JobStatus
from llm.selectors import run_job, run_job_prefetch
from llm.services.pipeline import ActiveRunConflict, pipeline_cancel, pipeline_rerun


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
        return super().get_queryset(request).prefetch_related(run_job_prefetch())

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: ClusteringRun) -> SafeString:
        return badge(f"run-{obj.status}", obj.status, data_run_id=obj.pk)

    @admin.display(description="progress")
    def progress(self, obj: ClusteringRun) -> SafeString:
        job = run_job(run=obj)
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
        return _job_totals_html(run_job(run=obj))

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
