"""Start, rerun and cancel the whole pipeline (clustering run, then summaries)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from clustering.models import ACTIVE_RUN_STATES, ClusteringRun, RunStatus
from clustering.services import ActiveRunConflict, active_run, clustering_run_create
from llm.models import GenerationJob, JobStatus
from llm.providers.registry import PROVIDERS, ProviderNotConfigured

# ActiveRunConflict and active_run live with the run creation that enforces them
__all__ = ["ActiveRunConflict", "active_run", "pipeline_cancel", "pipeline_rerun", "pipeline_start"]


def pipeline_start(
    *,
    dataset_slug: str,
    params: dict[str, Any] | None = None,
    cluster_type: str | None = None,
    provider: str | None = None,
    force: bool = False,
    enqueue: bool = True,
) -> ClusteringRun:
    """Create a clustering run and, after commit, enqueue cluster -> plan -> chord -> finalize.

    With ``enqueue=False`` only the run is created (the caller starts ``pipeline_chain``).
    At most one run of a dataset and cluster type is active: the check runs under a row lock
    on the dataset (``clustering_run_create(exclusive=True)``), so of two simultaneous starts
    one gets :class:`ActiveRunConflict`.

    Raises:
        UnknownDatasetError, InvalidParameters: from the clustering run.
        ActiveRunConflict: a run of the dataset and type is still clustering or summarising.
        ProviderNotConfigured: an unknown provider name (a missing key is not an error here: the
            job then finishes with every cluster skipped and one message).
    """
    if provider is not None and provider not in PROVIDERS:
        raise ProviderNotConfigured(
            f"unknown provider {provider!r}; choose one of {', '.join(PROVIDERS)}"
        )
    from llm.tasks import pipeline_chain

    with transaction.atomic():
        run = clustering_run_create(
            dataset_slug=dataset_slug, params=params, cluster_type=cluster_type, exclusive=True
        )
        if enqueue:
            signature = pipeline_chain(run_id=run.pk, provider=provider, force=force)
            transaction.on_commit(signature.apply_async)
    return run


def pipeline_rerun(
    *, run_id: int, provider: str | None = None, force: bool = False
) -> ClusteringRun:
    """Recluster the run's dataset with the same parameters and summarise again; clusters whose
    composition did not change are served from the cache.

    Raises:
        ActiveRunConflict: a run of the same dataset and cluster type is still active.
        ClusteringRun.DoesNotExist: no such run.
    """
    old = ClusteringRun.objects.select_related("dataset").get(pk=run_id)
    return pipeline_start(
        dataset_slug=old.dataset.slug,
        params=old.params,
        cluster_type=old.cluster_type,
        provider=provider,
        force=force,
    )


def pipeline_cancel(*, run_id: int) -> ClusteringRun:
    """Cancel a run: a run still clustering ends cancelled; its generation jobs end cancelled
    (clusters not yet started are skipped). A finished run is returned unchanged.

    Raises:
        ClusteringRun.DoesNotExist: no such run.
    """
    now = timezone.now()
    with transaction.atomic():
        run = ClusteringRun.objects.select_for_update().get(pk=run_id)
        if run.status in ACTIVE_RUN_STATES:
            run.status = RunStatus.CANCELLED
            run.finished_at = now
            run.progress_message = "Cancelled"
            run.save(update_fields=["status", "finished_at", "progress_message"])
        GenerationJob.objects.filter(
            run=run, status__in=[JobStatus.PENDING, JobStatus.RUNNING]
        ).update(status=JobStatus.CANCELLED, finished_at=now, message="cancelled")
    return run
