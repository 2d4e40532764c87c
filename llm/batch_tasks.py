"""Celery tasks of batch mode: thin wrappers around llm.services.batches."""

from __future__ import annotations

from celery import shared_task
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
    """Beat, every BATCH_POLL_INTERVAL seconds: advance every running batch-mode job, so that
    restarting every process resumes all open batches. Returns the number of jobs advanced."""
    from llm.services.batches import job_batch_advance

    open_states = ["preparing", "submitted", "running"]
    ids = list(
        GenerationJob.objects.filter(mode=GenerationJob.Mode.BATCH)
        .filter(
            Q(status=JobStatus.RUNNING)
            | Q(status=JobStatus.CANCELLED, batches__state__in=open_states)
        )
        .values_list("id", flat=True)
        .distinct()
    )
    for job_id in ids:
        job_batch_advance(job_id=job_id)
    return len(ids)
