"""Celery tasks of the clustering app: thin wrappers around services."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from .services import clustering_run_execute


@shared_task(name="clustering.cluster_run", bind=True, acks_late=True, reject_on_worker_lost=True)
def cluster_run(self: Any, run_id: int) -> int:
    """Compute and store a clustering run; idempotent (a finished run is left as it is). The
    task's id is recorded on the run, so that a cancel can revoke it.

    Returns the run id, never data: results live in the database.
    """
    clustering_run_execute(run_id=run_id, task_id=self.request.id or "")
    return run_id
