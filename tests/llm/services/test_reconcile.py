"""The reconciler, pass by pass, without a broker: which rows count as stalled, how re-drives are
counted and bounded, deadlines, lost chord callbacks, and concurrent passes.

Messages are sent after commit; these tests capture the on-commit callbacks instead of sending
them (the worker tests in test_reconcile_worker.py send them for real).
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from clustering.models import Cluster, ClusteringRun, Dataset, RunStatus
from clustering.services import clustering_run_create, clustering_run_execute
from llm.models import GenerationJob, JobStatus, LLMCall, SummaryTask, TaskState
from llm.services.generation import job_plan, summary_task_execute
from llm.services.reconcile import reconcile
from llm.tasks import summarise_cluster
from tests.support.planted_runs import PARAMS, import_planted

pytestmark = pytest.mark.django_db

LONG_AGO = timedelta(minutes=10)
STEP = timedelta(seconds=301)  # just past the default 300 s threshold


def _planned(planted_csv: Path) -> tuple[GenerationJob, list[int]]:
    """A clustered run whose job is planned but whose task messages were never sent."""
    slug = import_planted(planted_csv)
    run = clustering_run_create(dataset_slug=slug, params=PARAMS)
    clustering_run_execute(run_id=run.pk)
    ids = job_plan(run_id=run.pk)
    assert len(ids) == 3
    return GenerationJob.objects.get(run=run), ids


def _backdate_tasks(ids: list[int], by: timedelta = LONG_AGO) -> None:
    SummaryTask.objects.filter(pk__in=ids).update(updated_at=timezone.now() - by)


def _nothing(counts: dict[str, int]) -> bool:
    return not any(counts.values())


def test_lost_summary_messages_are_redriven_once(
    planted_csv: Path, django_capture_on_commit_callbacks, monkeypatch: pytest.MonkeyPatch
) -> None:
    job, ids = _planned(planted_csv)
    _backdate_tasks(ids)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        counts = reconcile()
    assert counts["tasks_redriven"] == 3
    assert len(callbacks) == 1
    for task in SummaryTask.objects.filter(pk__in=ids):
        assert task.state == TaskState.PENDING and (task.redrives, task.deliveries) == (1, 0)
    sent: list[int] = []
    monkeypatch.setattr(summarise_cluster, "delay", lambda task_id: sent.append(task_id))
    callbacks[0]()
    assert sorted(sent) == sorted(ids)
    # a second pass right after finds nothing stalled: the re-driven rows are fresh again
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert _nothing(reconcile())
    assert callbacks == []
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING


def test_recent_pending_tasks_are_left_alone(
    planted_csv: Path, django_capture_on_commit_callbacks
) -> None:
    _, ids = _planned(planted_csv)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert _nothing(reconcile())
    assert callbacks == []
    assert set(SummaryTask.objects.filter(pk__in=ids).values_list("redrives", flat=True)) == {0}


def test_busy_workers_hold_back_pending_tasks_but_not_expired_leases(
    planted_csv: Path, django_capture_on_commit_callbacks
) -> None:
    job, ids = _planned(planted_csv)
    _backdate_tasks(ids)
    now = timezone.now()
    live, dead, waiting = ids
    # a worker is busy on one task: the pending one is probably queued behind it, not lost
    SummaryTask.objects.filter(pk=live).update(
        state=TaskState.RUNNING, lease_until=now + timedelta(minutes=30), deliveries=1
    )
    # a worker died holding another: its lease (CELERY_TASK_TIME_LIMIT) ran out
    SummaryTask.objects.filter(pk=dead).update(
        state=TaskState.RUNNING, lease_until=now - timedelta(seconds=1), deliveries=1
    )
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        counts = reconcile()
    assert counts["tasks_redriven"] == 1 and len(callbacks) == 1
    rows = {t.pk: t for t in SummaryTask.objects.filter(job=job)}
    assert rows[dead].state == TaskState.PENDING and rows[dead].lease_until is None
    assert (rows[dead].redrives, rows[dead].deliveries) == (1, 1)  # the claim is counted apart
    assert rows[waiting].redrives == 0 and rows[live].state == TaskState.RUNNING
    # a recent provider call also counts as busy, and idle workers release the pending task
    SummaryTask.objects.filter(pk=live).update(state=TaskState.SUCCEEDED, lease_until=None)
    LLMCall.objects.create(
        job=job, kind="generate", provider="extractive", model="m", status="success"
    )
    with django_capture_on_commit_callbacks(execute=False):
        assert reconcile()["tasks_redriven"] == 0
    LLMCall.objects.update(created_at=now - LONG_AGO)
    with django_capture_on_commit_callbacks(execute=False):
        assert reconcile()["tasks_redriven"] == 1
    assert SummaryTask.objects.get(pk=waiting).redrives == 1


def test_redrives_are_bounded_then_the_task_fails_with_an_explanation(
    planted_csv: Path, django_capture_on_commit_callbacks, settings
) -> None:
    settings.RECONCILE_MAX_REDRIVES = 3
    job, ids = _planned(planted_csv)
    now = timezone.now()
    _backdate_tasks(ids)
    # one task is claimed by a worker that dies each time: claims do not use up re-drives
    SummaryTask.objects.filter(pk=ids[0]).update(deliveries=2)
    passes: list[dict[str, int]] = []
    with django_capture_on_commit_callbacks(execute=False):
        for _ in range(6):  # every message is lost again; each pass comes after the threshold
            passes.append(reconcile(now=now))
            now += STEP
    assert [p["tasks_redriven"] for p in passes] == [3, 3, 3, 0, 0, 0]
    assert [p["tasks_failed"] for p in passes] == [0, 0, 0, 3, 0, 0]
    assert passes[3]["jobs_finalized"] == 1  # all tasks finished: the job is finalized
    for task in SummaryTask.objects.filter(pk__in=ids):
        assert task.state == TaskState.FAILED and task.finished_at is not None
        assert task.redrives == 3
        assert "never picked up): gave up after being re-driven 3 times" in task.last_error
        assert "RECONCILE_MAX_REDRIVES 3" in task.last_error
        claims = 2 if task.pk == ids[0] else 0
        assert f"and {claims} worker claim(s) without finishing" in task.last_error
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and (job.total, job.failed) == (3, 3)


def _other_type_run(slug: str) -> ClusteringRun:
    """A pending phenotype run of the functional dataset ``slug``: a row the services no longer
    create (cluster_type must be the dataset's kind) but which the reconciler must handle
    beside the functional runs, e.g. a run stored before that rule."""
    return ClusteringRun.objects.create(
        dataset=Dataset.objects.get(slug=slug), cluster_type="phenotype", params=PARAMS
    )


def test_stalled_clustering_runs_are_redriven_then_failed(
    planted_csv: Path, django_capture_on_commit_callbacks
) -> None:
    slug = import_planted(planted_csv)
    pending = clustering_run_create(dataset_slug=slug, params=PARAMS)
    running = _other_type_run(slug)
    fresh = clustering_run_create(dataset_slug=slug, params={**PARAMS, "seed": 1})
    now = timezone.now()
    ClusteringRun.objects.filter(pk__in=[pending.pk, running.pk]).update(created_at=now - LONG_AGO)
    ClusteringRun.objects.filter(pk=running.pk).update(
        status=RunStatus.RUNNING, started_at=now - LONG_AGO, attempts=1
    )
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        counts = reconcile(now=now, max_redrives=3)
    assert counts["runs_redriven"] == 2 and len(callbacks) == 1
    pending.refresh_from_db()
    assert (pending.redrives, pending.attempts) == (1, 0) and pending.started_at == now
    assert pending.progress_message.startswith("Re-driven by the reconciler")
    assert ClusteringRun.objects.get(pk=fresh.pk).redrives == 0
    ClusteringRun.objects.filter(pk=fresh.pk).update(status=RunStatus.SUCCEEDED)  # finished
    with django_capture_on_commit_callbacks(execute=False):
        assert reconcile(now=now, max_redrives=3)["runs_redriven"] == 0  # not stale any more
        results = []
        for _ in range(4):
            now += STEP
            results.append(reconcile(now=now, max_redrives=3))
    assert [(r["runs_redriven"], r["runs_failed"]) for r in results] == [
        (2, 0),
        (2, 0),
        (0, 2),  # an execution by a worker (attempts) does not use up a re-drive
        (0, 0),
    ]
    for run in ClusteringRun.objects.filter(pk__in=[pending.pk, running.pk]):
        assert run.status == RunStatus.FAILED and run.finished_at is not None
        assert run.redrives == 3
        assert "gave up after being re-driven 3 times by the reconciler" in run.error
        assert "RECONCILE_MAX_REDRIVES 3" in run.error
    assert ClusteringRun.objects.get(pk=running.pk).error.endswith(
        "and 1 execution(s) without finishing"
    )
    assert ClusteringRun.objects.get(pk=fresh.pk).redrives == 0  # finished runs are left alone


def test_lost_chord_callback_is_finalized(
    planted_csv: Path, django_capture_on_commit_callbacks
) -> None:
    job, ids = _planned(planted_csv)
    for task_id in ids:
        summary_task_execute(task_id=task_id)
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING  # nobody called finalize
    with django_capture_on_commit_callbacks(execute=False):
        counts = reconcile()
        assert counts["jobs_finalized"] == 1
        assert _nothing(reconcile())
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and job.total == 3
    assert job.succeeded + job.rejected == 3 and job.progress_message.startswith("Done")


def test_job_past_its_deadline_fails_unfinished_tasks_and_is_finalized(
    planted_csv: Path, django_capture_on_commit_callbacks
) -> None:
    job, ids = _planned(planted_csv)
    summary_task_execute(task_id=ids[0])
    SummaryTask.objects.filter(pk=ids[1]).update(
        state=TaskState.RUNNING, lease_until=timezone.now() + timedelta(minutes=5)
    )
    now = timezone.now()
    # within the grace period workers may still record their own outcome
    GenerationJob.objects.filter(pk=job.pk).update(deadline=now - timedelta(seconds=30))
    with django_capture_on_commit_callbacks(execute=False):
        assert reconcile(now=now)["jobs_timed_out"] == 0
    GenerationJob.objects.filter(pk=job.pk).update(deadline=now - timedelta(minutes=2))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        counts = reconcile(now=now)
    assert (counts["jobs_timed_out"], counts["tasks_timed_out"]) == (1, 2)
    assert callbacks == []  # nothing re-sent for an expired job
    for task in SummaryTask.objects.filter(pk__in=ids[1:]):
        assert task.state == TaskState.FAILED and task.lease_until is None
        assert "job time limit exceeded" in task.last_error
    assert SummaryTask.objects.get(pk=ids[0]).state in (TaskState.SUCCEEDED, TaskState.REJECTED)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and job.finished_at is not None
    assert (job.total, job.failed, job.succeeded + job.rejected) == (3, 2, 1)
    assert "job time limit exceeded" in job.message
    with django_capture_on_commit_callbacks(execute=False):
        assert _nothing(reconcile(now=now))


def test_pending_job_whose_plan_was_lost_is_redriven_then_times_out(
    planted_csv: Path, django_capture_on_commit_callbacks, settings
) -> None:
    slug = import_planted(planted_csv)
    run = clustering_run_create(dataset_slug=slug, params=PARAMS)
    ClusteringRun.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED)
    job = GenerationJob.objects.create(
        run=run, provider="extractive", model="extractive", judge_model="extractive"
    )
    now = timezone.now()
    GenerationJob.objects.filter(pk=job.pk).update(created_at=now - LONG_AGO)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        counts = reconcile(now=now)
        assert reconcile(now=now)["jobs_redriven"] == 0
    assert counts["jobs_redriven"] == 1 and len(callbacks) == 1
    job.refresh_from_db()
    assert job.status == JobStatus.PENDING and job.started_at == now
    assert job.deadline == now + timedelta(seconds=settings.LLM_JOB_TIME_LIMIT)
    later = job.deadline + timedelta(minutes=2)
    with django_capture_on_commit_callbacks(execute=False):
        assert reconcile(now=later)["jobs_timed_out"] == 1
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and "never started" in job.message


def test_pending_job_redrives_are_bounded_then_it_fails_with_the_reason(
    planted_csv: Path, django_capture_on_commit_callbacks, settings
) -> None:
    settings.RECONCILE_MAX_REDRIVES = 2
    settings.LLM_JOB_TIME_LIMIT = 24 * 3600  # the deadline must not end it first
    slug = import_planted(planted_csv)
    run = clustering_run_create(dataset_slug=slug, params=PARAMS)
    clustering_run_execute(run_id=run.pk)
    job = GenerationJob.objects.create(
        run=run,
        scope=GenerationJob.Scope.CLUSTERS,
        provider="extractive",
        model="extractive",
        judge_model="extractive",
    )
    clusters = list(Cluster.objects.filter(run=run))
    SummaryTask.objects.bulk_create([SummaryTask(job=job, cluster=c) for c in clusters])
    now = timezone.now()
    GenerationJob.objects.filter(pk=job.pk).update(created_at=now - LONG_AGO)
    passes = []
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        for _ in range(4):  # the start message is lost every time
            passes.append(reconcile(now=now))
            now += STEP
    assert [(p["jobs_redriven"], p["jobs_failed"]) for p in passes] == [
        (1, 0),
        (1, 0),
        (0, 1),
        (0, 0),
    ]
    assert len(callbacks) == 2
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.redrives == 2 and job.finished_at is not None
    assert job.message.startswith("never started: its start message was re-sent 2 times")
    assert "RECONCILE_MAX_REDRIVES 2" in job.message
    assert (job.total, job.failed) == (len(clusters), len(clusters))
    assert set(SummaryTask.objects.filter(job=job).values_list("state", "last_error")) == {
        (TaskState.FAILED, job.message)
    }


def test_batch_jobs_are_left_to_the_batch_poller(
    planted_csv: Path, django_capture_on_commit_callbacks
) -> None:
    job, ids = _planned(planted_csv)
    now = timezone.now()
    GenerationJob.objects.filter(pk=job.pk).update(
        mode=GenerationJob.Mode.BATCH, deadline=now - timedelta(hours=2)
    )
    _backdate_tasks(ids)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert _nothing(reconcile(now=now))  # no re-drive, no deadline, no finalize
    assert callbacks == []
    # batch tasks wait with leases longer than BATCH_TIMEOUT; they do not make the realtime
    # workers look busy, so a realtime job's lost messages are still re-driven
    SummaryTask.objects.filter(pk__in=ids).update(
        state=TaskState.RUNNING, lease_until=now + timedelta(hours=25)
    )
    other = _other_type_run("planted")
    clustering_run_execute(run_id=other.pk)
    other_ids = job_plan(run_id=other.pk)
    _backdate_tasks(other_ids)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        counts = reconcile(now=now)
    assert counts["tasks_redriven"] == len(other_ids) == 3 and len(callbacks) == 1


def test_the_task_returns_counts(planted_csv: Path, django_capture_on_commit_callbacks) -> None:
    from llm.tasks import reconcile as reconcile_task

    _, ids = _planned(planted_csv)
    _backdate_tasks(ids)
    with django_capture_on_commit_callbacks(execute=False):
        counts = reconcile_task()
    assert counts["tasks_redriven"] == 3 and set(counts) >= {"runs_redriven", "jobs_finalized"}


@pytest.mark.django_db(transaction=True)
def test_concurrent_passes_redrive_each_row_once(
    planted_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slug = import_planted(planted_csv)
    run = clustering_run_create(dataset_slug=slug, params=PARAMS)
    ClusteringRun.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED)
    job = GenerationJob.objects.create(
        run=run,
        provider="extractive",
        model="extractive",
        judge_model="extractive",
        status=JobStatus.RUNNING,
        deadline=timezone.now() + timedelta(hours=1),
    )
    clusters = Cluster.objects.bulk_create(
        Cluster(run=run, number=i, size=1, members=[], composition_hash=f"h{i}") for i in range(60)
    )
    SummaryTask.objects.bulk_create(SummaryTask(job=job, cluster=c) for c in clusters)
    SummaryTask.objects.update(updated_at=timezone.now() - LONG_AGO)
    sent: list[int] = []
    lock = threading.Lock()

    def record(task_id: int) -> None:
        with lock:
            sent.append(task_id)

    monkeypatch.setattr(summarise_cluster, "delay", record)
    barrier = threading.Barrier(4)
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []
    start: datetime = timezone.now()

    def one_pass() -> None:
        try:
            barrier.wait()
            results.append(reconcile(now=start))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=one_pass) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert sum(r["tasks_redriven"] for r in results) == 60
    assert sorted(sent) == sorted(SummaryTask.objects.values_list("pk", flat=True))
    assert set(SummaryTask.objects.values_list("redrives", flat=True)) == {1}
