"""Celery tasks of batch mode: thin wrappers around llm.services.batches."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.db.models import Q

from llm.models import GenerationJob, JobStatus


@shared_task(name="llm.advance_batch_job", acks_late=True)
def advance_batch_job(job_id: int, batch_size: int | None = None) -> int:
    """One step of a batch-mode job: recover, poll, collect, submit, finalize. Returns the id."""
    from llm.services.batches import job_batch_advance

    job_batch_advance(job_id=job_id, batch_size=batch_size)
    return job_id


@shared_task(name="llm.poll_batches", acks_late=True)
def poll_batches() -> int:
    """Beat, every BATCH_POLL_INTERVAL seconds: send one ``llm.advance_batch_job`` per open
    batch-mode job to the ``default`` queue (the poller's own, so a backlog of realtime calls on
    ``llm`` cannot delay polling), so that jobs advance in parallel on the workers and one slow
    provider does not hold up the others; restarting every process resumes all open batches.
    Each message expires after two intervals (a backlog does not pile up), and the job's driver
    lease makes a duplicate harmless. Returns the number of jobs sent."""
    open_states = ["preparing", "submitted", "running"]
    ids = list(
        GenerationJob.objects.filter(mode=GenerationJob.Mode.BATCH)
        .filter(
            Q(status=JobStatus.RUNNING)
            | Q(status=JobStatus.CANCELLED, batches__state__in=open_states)
        )
        .values_list("id", flat=True)
        .distinct()
        .order_by("id")
    )
    expires = 2 * int(settings.BATCH_POLL_INTERVAL)
    for job_id in ids:
        advance_batch_job.apply_async((job_id,), queue="default", expires=expires)
    return len(ids)
