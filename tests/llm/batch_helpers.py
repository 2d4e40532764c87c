"""Helpers of the batch-mode tests that drive jobs through the OpenAI emulator: a planted,
clustered dataset and a loop that plays beat until a job is final."""

from __future__ import annotations

from pathlib import Path

from clustering.models import ClusteringRun
from clustering.services import clustering_run_create, clustering_run_execute, dataset_import
from llm.models import GenerationJob, JobStatus
from llm.services.batches import job_batch_advance
from tests.conftest import planted_rows
from tests.support.waiting import wait_until

PARAMS = {"k": 5, "min_cluster_size": 5}


def planted_run(tmp_path: Path, slug: str, groups: int = 3) -> ClusteringRun:
    """Import ``groups`` planted groups of 12 genes as dataset ``slug`` and cluster it
    (k = 5): the run comes back executed, normally with one cluster per group."""
    path = tmp_path / f"{slug}.csv"
    rows = planted_rows(groups=groups, size=12)
    path.write_text(
        "entity_id,symbol,term_id,term_name,category\n" + "\n".join(",".join(r) for r in rows)
    )
    dataset_import(path=path, slug=slug, kind="functional")
    run = clustering_run_create(dataset_slug=slug, params=PARAMS)
    return clustering_run_execute(run_id=run.pk)


def wait_final(job: GenerationJob, timeout: float = 90.0) -> GenerationJob:
    """Play beat (``job_batch_advance`` every 0.2 s) until ``job`` succeeded or failed; returns
    it refreshed.

    Raises:
        AssertionError: not final within ``timeout`` seconds.
    """

    def final() -> GenerationJob | None:
        job_batch_advance(job_id=job.pk)
        job.refresh_from_db()
        return job if job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED) else None

    return wait_until(
        final, timeout, f"job {job.pk} finished", interval=0.2, context=lambda: job.progress_message
    )
