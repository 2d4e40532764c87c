"""Start, rerun and cancel the whole pipeline (clustering run, then summaries)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from clustering.models import ACTIVE_RUN_STATES, ClusteringRun, RunStatus
from clustering.services import ActiveRunConflict, active_run, clustering_run_create
from llm.models import GenerationJob, JobStatus
from llm.providers.registry import (
    PROVIDERS,
    ProviderNotConfigured,
    default_judge_model,
    default_model,
)

logger = logging.getLogger(__name__)

# ActiveRunConflict and active_run live with the run creation that enforces them
__all__ = ["ActiveRunConflict", "active_run", "pipeline_cancel", "pipeline_rerun", "pipeline_start"]


def run_intent(
    *,
    provider: str | None = None,
    model: str | None = None,
    judge_model: str | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """What a run is asked to do after clustering, resolved now so that every later delivery of
    its chain (a re-drive after a worker died or the broker lost the message) does the same:
    ``{"provider": str, "model": str, "judge_model": str, "force": bool}``. ``provider``
    defaults to ``LLM_PROVIDER``, ``model`` to ``LLM_MODEL`` or the provider's default and
    ``judge_model`` to ``LLM_JUDGE_MODEL`` or the generation model.

    Raises:
        ProviderNotConfigured: an unknown provider name.
    """
    name = provider or settings.LLM_PROVIDER
    if name not in PROVIDERS:
        raise ProviderNotConfigured(
            f"unknown provider {name!r}; choose one of {', '.join(PROVIDERS)}"
        )
    return {
        "provider": name,
        "model": model or default_model(name),
        "judge_model": judge_model or model or default_judge_model(name),
        "force": bool(force),
    }


def pipeline_start(
    *,
    dataset_slug: str,
    params: dict[str, Any] | None = None,
    cluster_type: str | None = None,
    provider: str | None = None,
    model: str | None = None,
    judge_model: str | None = None,
    force: bool = False,
    enqueue: bool = True,
) -> ClusteringRun:
    """Create a clustering run and, after commit, enqueue cluster -> plan -> chord -> finalize.

    The run's intent (:func:`run_intent`: provider, models, force) is stored on the run
    (``ClusteringRun.intent``); the chain's messages carry only the run id, and the plan step
    reads the intent back from the row, so a re-driven chain does what was asked.
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
    intent = run_intent(provider=provider, model=model, judge_model=judge_model, force=force)
    from llm.tasks import pipeline_chain

    with transaction.atomic():
        run = clustering_run_create(
            dataset_slug=dataset_slug, params=params, cluster_type=cluster_type, exclusive=True
        )
        ClusteringRun.objects.filter(pk=run.pk).update(intent=intent)
        run.intent = intent
        if enqueue:
            signature = pipeline_chain(run_id=run.pk)
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


CANCELLED_MESSAGE = "job cancelled"


def pipeline_cancel(*, run_id: int) -> ClusteringRun:
    """Cancel a run so that its work stops, not only its status.

    - A run still clustering ends cancelled; the worker computing it stops at its next step
      (``clustering.liveness.RunCancelled``) and its Celery task is revoked with ``terminate``
      (safe: clustering writes its results in one transaction under a lock on the run, so a
      killed computation leaves nothing behind; pools that cannot terminate rely on the check
      between steps).
    - Its generation jobs end cancelled: clusters not yet started are skipped with "job
      cancelled" at once, and a worker summarising a cluster checks the job before each
      provider call, so no new call starts after the cancel (calls in flight finish and are
      recorded). Running summary tasks are never terminated: that would lose their call's record.
    - A finished run is returned unchanged.

    Raises:
        ClusteringRun.DoesNotExist: no such run.
    """
    now = timezone.now()
    revoke: str = ""
    with transaction.atomic():
        run = ClusteringRun.objects.select_for_update().get(pk=run_id)
        if run.status in ACTIVE_RUN_STATES:
            if run.status == RunStatus.RUNNING and run.task_id:
                revoke = run.task_id
            run.status = RunStatus.CANCELLED
            run.finished_at = now
            run.progress_message = "Cancelled"
            run.save(update_fields=["status", "finished_at", "progress_message"])
        jobs_cancel(GenerationJob.objects.filter(run=run), now=now)
        if revoke:
            transaction.on_commit(lambda: _revoke(revoke))
    return run


def jobs_cancel(jobs: QuerySet[GenerationJob], *, now: datetime | None = None) -> list[int]:
    """Cancel the pending or running jobs among ``jobs`` (locked): status cancelled, and their
    tasks not yet started skipped with "job cancelled" at once (a worker that receives one
    later does nothing). Tasks in flight finish their current provider call and stop (the
    worker checks the job before each call). Returns the ids of the jobs cancelled."""
    from llm.models import SummaryTask, TaskState

    now = now or timezone.now()
    with transaction.atomic():
        ids = list(
            jobs.select_for_update()
            .filter(status__in=[JobStatus.PENDING, JobStatus.RUNNING])
            .values_list("pk", flat=True)
        )
        if ids:
            GenerationJob.objects.filter(pk__in=ids).update(
                status=JobStatus.CANCELLED, finished_at=now, message="cancelled"
            )
            SummaryTask.objects.filter(job_id__in=ids, state=TaskState.PENDING).update(
                state=TaskState.SKIPPED, last_error=CANCELLED_MESSAGE, finished_at=now
            )
    return ids


def _revoke(task_id: str) -> None:
    """Revoke (and terminate) the clustering task; a broker that cannot be reached is logged,
    not raised: the run is cancelled in the database, and the worker stops at its next step."""
    from config.celery import app

    try:
        app.control.revoke(task_id, terminate=True, signal="SIGTERM")
    except Exception as exc:  # the cancel itself has been committed
        logger.warning("could not revoke clustering task %s: %s", task_id, exc)
