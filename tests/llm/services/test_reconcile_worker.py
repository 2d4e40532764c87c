"""The reconciler and the scheduled rerun with a real Celery worker on Redis and PostgreSQL and
the offline extractive provider: lost messages are re-driven and the run completes."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from clustering.models import ClusteringRun, RunStatus
from clustering.services import clustering_run_execute
from llm.models import TERMINAL_STATES, GenerationJob, JobStatus, LLMCall, SummaryTask, TaskState
from llm.services.generation import job_plan
from llm.services.pipeline import pipeline_start
from llm.services.reconcile import reconcile
from llm.tasks import reconcile as reconcile_task
from llm.tasks import scheduled_rerun
from tests.support.planted_runs import PARAMS, import_planted
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

LONG_AGO = timedelta(minutes=10)
FINAL_JOB = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


def _job_of(run_id: int, timeout: float = 60.0) -> GenerationJob:
    def done() -> bool:
        job = GenerationJob.objects.filter(run_id=run_id).first()
        return job is not None and job.status in FINAL_JOB

    wait_until(done, timeout, f"final job of run {run_id}")
    return GenerationJob.objects.get(run_id=run_id)


def test_lost_summary_messages_are_redriven_and_the_job_completes(
    celery_worker: object, planted_csv: Path
) -> None:
    slug = import_planted(planted_csv)
    run = pipeline_start(dataset_slug=slug, params=PARAMS, enqueue=False)
    clustering_run_execute(run_id=run.pk)
    ids = job_plan(run_id=run.pk)  # tasks planned, but their messages were lost
    assert len(ids) == 3
    SummaryTask.objects.filter(pk__in=ids).update(updated_at=timezone.now() - LONG_AGO)

    assert reconcile()["tasks_redriven"] == 3  # messages go out on commit

    def all_finished() -> bool:
        return (
            not SummaryTask.objects.filter(pk__in=ids).exclude(state__in=TERMINAL_STATES).exists()
        )

    wait_until(all_finished, 60.0, "every re-driven task finished")
    job = GenerationJob.objects.get(run=run)
    assert job.status == JobStatus.RUNNING  # the chord was never sent, so nobody finalized
    # the next pass, through beat's task on the worker, finalizes the job
    counts = reconcile_task.delay().get(timeout=30)
    assert counts["jobs_finalized"] == 1
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    assert job.total == 3 and job.succeeded + job.rejected == 3 and job.failed == 0
    for task in SummaryTask.objects.filter(job=job):
        assert (task.redrives, task.deliveries) == (1, 1)  # one re-drive, one claim
        assert task.summary is not None
    assert LLMCall.objects.filter(job=job, kind="generate").count() == 3


def test_clustering_run_stuck_pending_is_redriven_through_the_whole_chain(
    celery_worker: object, planted_csv: Path
) -> None:
    slug = import_planted(planted_csv)
    run = pipeline_start(dataset_slug=slug, params=PARAMS, enqueue=False)  # message lost
    ClusteringRun.objects.filter(pk=run.pk).update(created_at=timezone.now() - LONG_AGO)

    assert reconcile()["runs_redriven"] == 1

    job = _job_of(run.pk)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    assert (run.redrives, run.attempts) == (1, 1)  # the re-drive and the execution
    assert job.status == JobStatus.SUCCEEDED and job.total == 3
    assert job.succeeded + job.rejected == 3
    assert not SummaryTask.objects.filter(job=job, state=TaskState.FAILED).exists()


def test_scheduled_rerun_task_on_the_worker_serves_unchanged_clusters_from_cache(
    celery_worker: object, planted_csv: Path
) -> None:
    slug = import_planted(planted_csv)
    first = pipeline_start(dataset_slug=slug, params=PARAMS)
    done = _job_of(first.pk)
    assert done.succeeded + done.rejected == 3
    calls = LLMCall.objects.count()

    run_id = scheduled_rerun.delay(slug, "functional").get(timeout=30)
    assert run_id is not None and run_id != first.pk
    job = _job_of(run_id)
    assert (job.total, job.skipped, job.succeeded, job.failed) == (3, 3, 0, 0)
    assert LLMCall.objects.count() == calls
    assert (
        ClusteringRun.objects.get(pk=run_id).params == ClusteringRun.objects.get(pk=first.pk).params
    )
