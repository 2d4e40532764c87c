"""Reads for the REST API: runs with their summarisation job, summaries visible to a user,
current summaries of clusters, generation jobs and provider calls.

Rule of visibility (DESIGN.md): anonymous readers see validated summaries only; any
authenticated user sees every status.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db.models import Count, Prefetch, QuerySet, TextField
from django.db.models.functions import Cast

from clustering.models import Cluster, ClusteringRun, Dataset, RunStatus
from llm.models import (
    ClusterSummary,
    GenerationJob,
    JobStatus,
    LLMCall,
    ValidationEvent,
    ValidationStatus,
)
from llm.services.cache import current_summaries

#: Attribute a run from :func:`run_list` carries: its run-scope jobs (zero or one).
RUN_JOBS_ATTR = "run_scope_jobs"


def _is_authenticated(user: Any) -> bool:
    return bool(getattr(user, "is_authenticated", False))


# --- runs -------------------------------------------------------------------------------------


def run_job_prefetch() -> Prefetch:
    """Prefetch of a run's run-scope ``GenerationJob`` (zero or one) into
    :data:`RUN_JOBS_ATTR`, where :func:`run_job` finds it."""
    return Prefetch(
        "generation_jobs",
        queryset=GenerationJob.objects.filter(scope=GenerationJob.Scope.RUN),
        to_attr=RUN_JOBS_ATTR,
    )


def run_list() -> QuerySet[ClusteringRun]:
    """Runs, newest first, with the dataset, the cluster count (``cluster_count``) and the
    run-scope ``GenerationJob`` prefetched (see :func:`run_job`). Three queries per page."""
    return (
        ClusteringRun.objects.select_related("dataset")
        .annotate(cluster_count=Count("clusters"))
        .prefetch_related(run_job_prefetch())
        .order_by("-created_at", "-id")
    )


def run_job(*, run: ClusteringRun) -> GenerationJob | None:
    """The run's summarisation job (scope "run"), or None before the plan step created it."""
    jobs = getattr(run, RUN_JOBS_ATTR, None)
    if jobs is not None:
        return jobs[0] if jobs else None
    return GenerationJob.objects.filter(run=run, scope=GenerationJob.Scope.RUN).first()


def run_summarising(*, dataset: Dataset, cluster_type: str) -> ClusteringRun | None:
    """A run of this dataset and cluster type whose generation job is pending or running, if
    any: while it summarises it is active (``clustering.services.active_run``, where
    :class:`llm.apps.LlmConfig` registers this check)."""
    job = (
        GenerationJob.objects.filter(
            run__dataset=dataset,
            run__cluster_type=cluster_type,
            status__in=[JobStatus.PENDING, JobStatus.RUNNING],
        )
        .select_related("run")
        .first()
    )
    return job.run if job is not None else None


@dataclass(frozen=True)
class RunState:
    """What a client polling a run wants to know.

    ``stage``: pending | clustering | clustered (no summarisation job yet) | summarising |
    succeeded | failed | cancelled. ``progress_*``: the job's progress while it summarises (or its
    final message once it has finished), else the clustering run's. Totals, tokens and cost come
    from the run-scope job (zero without one); cost in USD.
    """

    stage: str
    progress_current: int
    progress_total: int
    progress_message: str
    total: int
    succeeded: int
    failed: int
    skipped: int
    rejected: int
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal


def run_state(*, run: ClusteringRun, job: GenerationJob | None) -> RunState:
    """Stage, progress, totals, tokens and cost of a run and its run-scope job."""
    if run.status != RunStatus.SUCCEEDED or job is None:
        stage = {
            RunStatus.PENDING: "pending",
            RunStatus.RUNNING: "clustering",
            RunStatus.SUCCEEDED: "clustered",
        }.get(RunStatus(run.status), str(run.status))
        current, total, message = run.progress_current, run.progress_total, run.progress_message
    else:
        stage = {
            JobStatus.PENDING: "summarising",
            JobStatus.RUNNING: "summarising",
        }.get(JobStatus(job.status), str(job.status))
        current, total = job.progress_current, job.progress_total
        message = job.progress_message or job.message or run.progress_message
    if job is None:
        return RunState(stage, current, total, message, 0, 0, 0, 0, 0, 0, 0, Decimal(0))
    return RunState(
        stage=stage,
        progress_current=current,
        progress_total=total,
        progress_message=message,
        total=job.total,
        succeeded=job.succeeded,
        failed=job.failed,
        skipped=job.skipped,
        rejected=job.rejected,
        input_tokens=job.input_tokens,
        output_tokens=job.output_tokens,
        cost_usd=job.cost_usd,
    )


# --- summaries --------------------------------------------------------------------------------


def summary_list(*, user: Any) -> QuerySet[ClusterSummary]:
    """Summaries ``user`` may read, newest first: validated only for an anonymous user."""
    queryset = ClusterSummary.objects.select_related("dataset", "validated_by").order_by(
        "-generated_at", "-id"
    )
    if not _is_authenticated(user):
        queryset = queryset.filter(validation_status=ValidationStatus.VALIDATED)
    return queryset


def summary_detail_list(*, user: Any) -> QuerySet[ClusterSummary]:
    """As :func:`summary_list`, with the audit trail (``events`` and their users) prefetched."""
    return summary_list(user=user).prefetch_related(
        Prefetch("events", queryset=ValidationEvent.objects.select_related("user"))
    )


def _json_element(value: str) -> str:
    # A JSON list rendered as text holds each string element double-quoted: matching the quoted
    # value finds a whole element, not a substring, on PostgreSQL and SQLite alike.
    return json.dumps(value, ensure_ascii=False)


def summaries_with_member(
    queryset: QuerySet[ClusterSummary], *, symbol: str
) -> QuerySet[ClusterSummary]:
    """Summaries whose member symbols include ``symbol`` exactly (case-insensitive)."""
    return queryset.alias(_members_text=Cast("members", TextField())).filter(
        _members_text__icontains=_json_element(symbol.strip())
    )


def summaries_with_tag(queryset: QuerySet[ClusterSummary], *, tag: str) -> QuerySet[ClusterSummary]:
    """Summaries whose tags include ``tag`` exactly (case-insensitive)."""
    return queryset.alias(_tags_text=Cast("tags", TextField())).filter(
        _tags_text__icontains=_json_element(tag.strip())
    )


def _current_by_cluster(
    clusters: list[Cluster], visible: QuerySet[ClusterSummary]
) -> dict[int, ClusterSummary]:
    # one query: the current summaries of these compositions among ``visible``
    hashes = {c.composition_hash for c in clusters}
    types = {c.run.cluster_type for c in clusters}
    rows = visible & current_summaries(cluster_type=types, hashes=hashes)
    found = {(s.composition_hash, s.cluster_type): s for s in rows}
    out: dict[int, ClusterSummary] = {}
    for cluster in clusters:
        summary = found.get((cluster.composition_hash, cluster.run.cluster_type))
        if summary is not None:
            out[cluster.pk] = summary
    return out


def summary_current_for_clusters(
    *, clusters: Iterable[Cluster], user: Any
) -> dict[int, ClusterSummary]:
    """Cluster id -> the current summary of its composition and cluster type, for the clusters
    that have one ``user`` may read. One query; the clusters need ``run`` loaded or cached.

    Summaries are looked up by composition, not by the ``cluster`` foreign key: a cache hit
    serves a summary written for an earlier run's cluster with the same members."""
    clusters = list(clusters)
    if not clusters:
        return {}
    return _current_by_cluster(clusters, summary_list(user=user))


def summary_current_any_status(*, clusters: Iterable[Cluster]) -> dict[int, ClusterSummary]:
    """As :func:`summary_current_for_clusters` whatever the reader, with ``validated_by``
    loaded: for the run report, which shows every summary's review status and decides itself
    whose text a reader may see."""
    clusters = list(clusters)
    if not clusters:
        return {}
    return _current_by_cluster(clusters, ClusterSummary.objects.select_related("validated_by"))


# --- jobs and calls ---------------------------------------------------------------------------


def job_list() -> QuerySet[GenerationJob]:
    """Generation jobs, newest first, with their requester."""
    return GenerationJob.objects.select_related("requested_by").order_by("-created_at", "-id")


def llm_call_list() -> QuerySet[LLMCall]:
    """Provider calls, newest first."""
    return LLMCall.objects.order_by("-created_at", "-id")
