"""Celery tasks of the clustering app: thin wrappers around services."""

from __future__ import annotations

from celery import shared_task

from .services import clustering_run_execute


@shared_task(name="clustering.cluster_run", acks_late=True, reject_on_worker_lost=True)
def cluster_run(run_id: int) -> int:
    """Compute and store a clustering run; idempotent (a finished run is left as it is).

    Returns the run id, never data: results live in the database.
    """
    clustering_run_execute(run_id=run_id)
    return run_id
