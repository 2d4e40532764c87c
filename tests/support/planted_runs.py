"""Tests of scheduled reruns (beat) and the reconciler. Helpers shared by the modules: a small
planted dataset and a run taken through the services eagerly (no broker)."""

from __future__ import annotations

from pathlib import Path

from clustering.models import ClusteringRun
from clustering.services import clustering_run_execute, dataset_import
from llm.models import GenerationJob
from llm.services.generation import job_plan, summary_task_execute
from llm.services.steps import job_finalize

PARAMS = {"k": 5, "min_cluster_size": 5}
SLUG = "planted"


def import_planted(path: Path) -> str:
    """Import the planted CSV (three groups of twelve, kind functional) as ``planted``."""
    dataset_import(path=path, slug=SLUG, kind="functional")
    return SLUG


def complete_eagerly(run: ClusteringRun) -> GenerationJob:
    """Cluster, plan, summarise every miss with the configured (extractive) provider and
    finalize, in this process; returns the finalized job."""
    clustering_run_execute(run_id=run.pk)
    for task_id in job_plan(run_id=run.pk):
        summary_task_execute(task_id=task_id)
    job = GenerationJob.objects.get(run=run, scope=GenerationJob.Scope.RUN)
    assert job_finalize(job_id=job.pk)
    job.refresh_from_db()
    return job
