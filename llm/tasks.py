"""Celery tasks of the summary pipeline: thin, id-only, idempotent.

cluster_run -> plan_summaries -> chord(summarise_cluster per missed cluster) -> finalize_job
"""

from __future__ import annotations

from typing import Any

from celery import chain, chord, shared_task
from django.db import transaction

from clustering.tasks import cluster_run
from llm.models import GenerationJob
from llm.services.generation import job_finalize, job_plan, job_start, summary_task_execute


def _launch(job_id: int, task_ids: list[int]) -> None:
    """After commit: a chord over the tasks with finalize as its body, or finalize alone."""
    if task_ids:
        header = [summarise_cluster.si(task_id) for task_id in task_ids]
        transaction.on_commit(lambda: chord(header)(finalize_job.si(job_id)))
    else:
        transaction.on_commit(lambda: finalize_job.delay(job_id))


@shared_task(name="llm.plan_summaries", acks_late=True)
def plan_summaries(run_id: int, provider: str | None = None, force: bool = False) -> int:
    """Plan the run's job (one bulk cache lookup) and start a chord over the misses.

    Returns the job id.
    """
    misses = job_plan(run_id=run_id, provider=provider, force=force)
    job_id = GenerationJob.objects.values_list("id", flat=True).get(run_id=run_id, scope="run")
    _launch(job_id, misses)
    return job_id


@shared_task(name="llm.start_job", acks_late=True)
def start_job(job_id: int) -> int:
    """Start a job whose tasks already exist (a curator's regeneration)."""
    _launch(job_id, job_start(job_id=job_id))
    return job_id


@shared_task(name="llm.summarise_cluster", acks_late=True)
def summarise_cluster(task_id: int) -> int:
    """Generate, validate and judge one cluster's summary; returns the task id only."""
    summary_task_execute(task_id=task_id)
    return task_id


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


def pipeline_chain(*, run_id: int, provider: str | None, force: bool) -> Any:
    """The signature of the whole chain for a created clustering run."""
    return chain(cluster_run.si(run_id), plan_summaries.si(run_id, provider, force))
