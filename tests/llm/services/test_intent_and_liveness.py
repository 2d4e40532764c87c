"""A run's stored intent, its clustering heartbeat and cancellation between steps, pass by pass
without a broker (the drills in tests/drills/ test the same with real workers)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from clustering.liveness import RunCancelled, heartbeat_interval, progress_write
from clustering.models import Cluster, ClusteringRun, RunStatus
from clustering.services import clustering_run_execute
from llm.models import GenerationJob, JobStatus, SummaryTask, TaskState
from llm.providers.registry import ProviderNotConfigured, default_model
from llm.services.generation import job_plan
from llm.services.pipeline import CANCELLED_MESSAGE, pipeline_cancel, pipeline_start
from llm.services.reconcile import reconcile
from tests.support.planted_runs import PARAMS, import_planted

pytestmark = pytest.mark.django_db

LONG_AGO = timedelta(minutes=10)


def _start(planted_csv: Path, **intent: Any) -> ClusteringRun:
    slug = import_planted(planted_csv)
    return pipeline_start(dataset_slug=slug, params=PARAMS, enqueue=False, **intent)


def test_the_intent_is_resolved_and_stored_on_the_run(planted_csv: Path) -> None:
    run = _start(planted_csv, provider="gemini", force=True)
    stored = ClusteringRun.objects.get(pk=run.pk).intent
    assert stored == {
        "provider": "gemini",
        "model": default_model("gemini"),
        "judge_model": default_model("gemini"),
        "force": True,
    }


def test_the_plan_step_reads_the_intent_not_its_message(planted_csv: Path, settings: Any) -> None:
    run = _start(planted_csv, provider="gemini", model="m-gen", judge_model="m-judge", force=True)
    clustering_run_execute(run_id=run.pk)
    settings.LLM_PROVIDER = "extractive"
    # a message without the intent, as the reconciler sends it
    job_plan(run_id=run.pk)
    job = GenerationJob.objects.get(run=run)
    assert (job.provider, job.model, job.judge_model, job.force) == (
        "gemini",
        "m-gen",
        "m-judge",
        True,
    )


def test_an_unknown_provider_is_refused_before_any_row(planted_csv: Path) -> None:
    slug = import_planted(planted_csv)
    with pytest.raises(ProviderNotConfigured):
        pipeline_start(dataset_slug=slug, params=PARAMS, enqueue=False, provider="nope")
    assert not ClusteringRun.objects.exists()


def test_reconciler_sends_a_chain_that_carries_the_run_id_only(
    planted_csv: Path, django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _start(planted_csv, provider="gemini", force=True)
    ClusteringRun.objects.filter(pk=run.pk).update(created_at=timezone.now() - LONG_AGO)
    sent: list[Any] = []
    monkeypatch.setattr("celery.canvas._chain.apply_async", lambda self, *a, **k: sent.append(self))
    with django_capture_on_commit_callbacks(execute=True):
        assert reconcile()["runs_redriven"] == 1
    [chain] = sent
    assert [(t.name, tuple(t.args)) for t in chain.tasks] == [
        ("clustering.cluster_run", (run.pk,)),
        ("llm.plan_summaries", (run.pk,)),
    ]


def test_stall_is_measured_from_the_heartbeat(planted_csv: Path) -> None:
    run = _start(planted_csv)
    now = timezone.now()
    ClusteringRun.objects.filter(pk=run.pk).update(
        status=RunStatus.RUNNING, started_at=now - LONG_AGO, heartbeat_at=now
    )
    assert reconcile()["runs_redriven"] == 0  # started long ago, but alive
    ClusteringRun.objects.filter(pk=run.pk).update(heartbeat_at=now - LONG_AGO)
    assert reconcile()["runs_redriven"] == 1  # the heartbeat stopped
    row = ClusteringRun.objects.get(pk=run.pk)
    assert row.redrives == 1 and row.heartbeat_at is not None and row.heartbeat_at > now


def test_heartbeat_interval_is_a_quarter_of_the_threshold(settings: Any) -> None:
    settings.RECONCILE_STALL_SECONDS = 300
    assert heartbeat_interval() == 30.0
    settings.RECONCILE_STALL_SECONDS = 20
    assert heartbeat_interval() == 5.0
    settings.RECONCILE_STALL_SECONDS = 1
    assert heartbeat_interval() == 0.5


def test_a_run_cancelled_between_steps_stops_and_stays_cancelled(planted_csv: Path) -> None:
    run = _start(planted_csv)
    steps: list[int] = []

    def cancel_at_step_three(current: int, total: int, message: str) -> None:
        steps.append(current)
        if current == 3:
            pipeline_cancel(run_id=run.pk)

    result = clustering_run_execute(run_id=run.pk, progress=cancel_at_step_three)
    assert result.status == RunStatus.CANCELLED
    assert steps == [0, 1, 2, 3]  # nothing computed or recorded after the cancel
    row = ClusteringRun.objects.get(pk=run.pk)
    assert row.status == RunStatus.CANCELLED and row.progress_current == 3 and not row.error
    assert not Cluster.objects.filter(run=row).exists()
    with pytest.raises(RunCancelled):
        progress_write(run.pk, 4, 8, "next step")
    # the plan step of the chain plans nothing for it
    assert job_plan(run_id=run.pk) == []
    job = GenerationJob.objects.get(run=row)
    assert job.status == JobStatus.CANCELLED and not SummaryTask.objects.filter(job=job).exists()


def test_cancel_skips_the_clusters_not_started(planted_csv: Path) -> None:
    run = _start(planted_csv)
    clustering_run_execute(run_id=run.pk)
    ids = job_plan(run_id=run.pk)
    assert len(ids) == 3
    SummaryTask.objects.filter(pk=ids[0]).update(state=TaskState.RUNNING)
    pipeline_cancel(run_id=run.pk)
    job = GenerationJob.objects.get(run=run)
    assert job.status == JobStatus.CANCELLED
    states = dict(SummaryTask.objects.filter(job=job).values_list("pk", "state"))
    assert states[ids[0]] == TaskState.RUNNING  # finishes by itself, without a new call
    assert {states[i] for i in ids[1:]} == {TaskState.SKIPPED}
    assert set(SummaryTask.objects.filter(pk__in=ids[1:]).values_list("last_error", flat=True)) == {
        CANCELLED_MESSAGE
    }
