"""Celery tasks of the summary pipeline: thin, id-only, idempotent.

cluster_run -> plan_summaries -> chord(summarise_cluster per missed cluster) -> finalize_job
"""

from __future__ import annotations

import time
from typing import Any

from celery import chain, chord, shared_task
from django.conf import settings
from django.db import transaction

from clustering.tasks import cluster_run
from llm.models import GenerationJob, JobStatus
from llm.services.generation import (
    TaskRequeued,
    job_plan,
    job_start,
    summary_task_execute,
    summary_tasks_load,
)
from llm.services.steps import job_finalize

from . import batch_tasks  # noqa: F401  (registers the batch tasks with Celery)

#: A chord header message per at least this many clusters when chunking (see _chunks).
MESSAGES_PER_JOB_MIN = 64


def _chunks(task_ids: list[int]) -> list[list[int]]:
    """The tasks in header chunks of up to ``LLM_CLUSTERS_PER_MESSAGE`` clusters, but never
    fewer than :data:`MESSAGES_PER_JOB_MIN` messages while there are that many tasks, so a
    small job still spreads over every worker thread (one cluster per message below 128)."""
    size = max(1, min(settings.LLM_CLUSTERS_PER_MESSAGE, len(task_ids) // MESSAGES_PER_JOB_MIN))
    return [task_ids[at : at + size] for at in range(0, len(task_ids), size)]


def _launch(job_id: int, task_ids: list[int]) -> None:
    """After commit: a chord over the tasks (chunked, see :func:`_chunks`) with finalize as its
    body, or finalize alone."""
    if task_ids:
        header = [
            summarise_cluster.si(chunk[0]) if len(chunk) == 1 else summarise_clusters.si(chunk)
            for chunk in _chunks(task_ids)
        ]
        transaction.on_commit(lambda: chord(header)(finalize_job.si(job_id)))
    else:
        transaction.on_commit(lambda: finalize_job.delay(job_id))


@shared_task(name="llm.plan_summaries", acks_late=True)
def plan_summaries(run_id: int, provider: str | None = None, force: bool | None = None) -> int:
    """Plan the run's job (one bulk cache lookup), then start a chord over the misses, or, above
    BATCH_THRESHOLD misses with a batch-capable provider, hand them to the batch driver.

    Provider, models and force come from the run's stored intent (``ClusteringRun.intent``);
    ``provider`` and ``force`` are only used for runs without one (created outside
    ``pipeline_start``, or messages sent before intents were stored). Returns the job id.
    """
    from llm.batch_tasks import advance_batch_job
    from llm.services.batches import batch_mode_wanted, job_batch_begin

    misses = job_plan(run_id=run_id, provider=provider, force=force)
    job = GenerationJob.objects.get(run_id=run_id, scope="run")
    if job.status == JobStatus.CANCELLED:  # cancelled while planning: start nothing
        return job.pk
    if batch_mode_wanted(provider=job.provider, misses=len(misses)):
        job_batch_begin(job_id=job.pk, task_ids=misses)
        transaction.on_commit(lambda: advance_batch_job.delay(job.pk))
    else:
        _launch(job.pk, misses)
    return job.pk


@shared_task(name="llm.start_job", acks_late=True)
def start_job(job_id: int) -> int:
    """Start a job whose tasks already exist (a curator's regeneration)."""
    _launch(job_id, job_start(job_id=job_id))
    return job_id


@shared_task(name="llm.summarise_cluster", bind=True, acks_late=True, max_retries=None)
def summarise_cluster(self: Any, task_id: int) -> int:
    """Generate, validate and judge one cluster's summary; returns the task id only.

    A transient failure of the generation call after its last try sends the task back to the
    queue with a delay (a Celery retry with ``countdown``; the chord waits for it), bounded by
    the job's deadline rather than a count (see ``llm.services.requeue.requeue_countdown``).
    """
    try:
        summary_task_execute(task_id=task_id)
    except TaskRequeued as requeued:
        raise self.retry(countdown=requeued.countdown) from None
    return task_id


@shared_task(name="llm.summarise_clusters", acks_late=True)
def summarise_clusters(task_ids: list[int]) -> int:
    """Summarise several clusters one after the other (a chunk of a chord header: one broker
    message, result and chord counter update for the lot); returns how many were run here.

    Each cluster is claimed on its own, so a redelivered chunk skips the finished ones. Past
    half the task's soft time limit the rest goes out as a new message, and a cluster requeued
    after a transient failure goes out alone with its delay (the chord's finalize retries until
    every task row is finished).
    """
    budget = time.monotonic() + settings.CELERY_TASK_SOFT_TIME_LIMIT / 2
    loaded = summary_tasks_load(task_ids=task_ids)  # two queries for the chunk, not per task
    for done, task_id in enumerate(task_ids):
        if done and time.monotonic() > budget:
            summarise_clusters.delay(task_ids[done:])
            return done
        try:
            summary_task_execute(task_id=task_id, loaded=loaded.get(task_id))
        except TaskRequeued as requeued:  # this cluster alone goes back to the queue
            summarise_cluster.apply_async((task_id,), countdown=requeued.countdown)
    return len(task_ids)


@shared_task(
    name="llm.finalize_job", bind=True, acks_late=True, max_retries=720, default_retry_delay=5
)
def finalize_job(self: Any, job_id: int) -> int:
    """Write the job's totals from the database; retried (every 5 s, up to an hour) while a
    duplicate delivery of a cluster task is still finishing."""
    if not job_finalize(job_id=job_id):
        raise self.retry()
    return job_id


def enqueue_job(job_id: int) -> None:
    """Send :func:`start_job` for a job created by a service."""
    start_job.delay(job_id)


def pipeline_chain(*, run_id: int) -> Any:
    """The signature of the whole chain for a created clustering run. The messages carry the
    run id only: what to do (provider, models, force) is read from the run's row."""
    return chain(cluster_run.si(run_id), plan_summaries.si(run_id))


# --- scheduled work (beat) -----------------------------------------------------------------
# Their beat rows send them to the default queue (PeriodicTask.queue): a backlog of provider
# calls on the llm queue must not delay a scheduled rerun or the reconciler.


@shared_task(name="llm.scheduled_rerun", acks_late=True)
def scheduled_rerun(
    dataset: str,
    cluster_type: str | None = None,
    params: dict[str, Any] | None = None,
    provider: str | None = None,
) -> int | None:
    """Rerun a dataset for a beat schedule (``manage.py schedule_rerun``): recluster with the
    schedule's own ``params`` (stored in its kwargs) and summarise only changed compositions.
    Returns the new run's id, or None when a run of the same dataset and type is still active or
    the input is invalid (logged; retrying would not help)."""
    import logging

    from clustering.domain.params import InvalidParameters
    from clustering.services import UnknownDatasetError
    from llm.providers.registry import ProviderNotConfigured
    from llm.services.schedules import scheduled_rerun_start

    try:
        run = scheduled_rerun_start(
            dataset_slug=dataset, cluster_type=cluster_type, params=params, provider=provider
        )
    except (UnknownDatasetError, InvalidParameters, ProviderNotConfigured) as exc:
        logging.getLogger(__name__).error(
            "scheduled rerun of %s (%s) not started: %s", dataset, cluster_type, exc
        )
        return None
    return run.pk if run is not None else None


@shared_task(name="llm.reconcile", acks_late=True)
def reconcile() -> dict[str, int]:
    """Re-drive stalled runs, summary tasks and jobs and end jobs past their deadline (beat,
    every minute); returns counts by kind. Idempotent and safe to run concurrently."""
    from llm.services.reconcile import reconcile as reconcile_pass

    return reconcile_pass()
