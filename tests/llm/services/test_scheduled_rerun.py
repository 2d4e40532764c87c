"""The `llm.scheduled_rerun` task and its service: starts a run with the latest parameters,
never overlaps an active run, and regenerates nothing when the data did not change."""

from __future__ import annotations

from pathlib import Path

import pytest

from clustering.domain.params import ClusteringParams, InvalidParameters
from clustering.models import ClusteringRun, RunStatus
from clustering.services import clustering_run_create
from llm.models import GenerationJob, JobStatus, LLMCall, SummaryTask, TaskState
from llm.services.schedules import scheduled_rerun_start
from llm.tasks import scheduled_rerun
from tests.support.planted_runs import PARAMS, complete_eagerly, import_planted

pytestmark = pytest.mark.django_db


def test_starts_a_run_with_the_latest_parameters(
    planted_csv: Path, django_capture_on_commit_callbacks
) -> None:
    planted = import_planted(planted_csv)
    old = clustering_run_create(dataset_slug=planted, params={**PARAMS, "seed": 7})
    ClusteringRun.objects.filter(pk=old.pk).update(status=RunStatus.SUCCEEDED)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        run = scheduled_rerun_start(dataset_slug=planted, cluster_type="functional")
    assert run is not None and run.pk != old.pk
    assert run.status == RunStatus.PENDING and run.cluster_type == "functional"
    assert run.params == old.params
    assert len(callbacks) == 1  # the pipeline chain, sent after commit


def test_prefers_the_latest_succeeded_run_and_defaults_without_any(
    planted_csv: Path, django_capture_on_commit_callbacks
) -> None:
    planted = import_planted(planted_csv)
    with django_capture_on_commit_callbacks(execute=False):
        first = scheduled_rerun_start(dataset_slug=planted, cluster_type="functional")
    assert first is not None
    assert first.params == ClusteringParams().to_dict()
    ClusteringRun.objects.filter(pk=first.pk).update(status=RunStatus.SUCCEEDED)
    failed = clustering_run_create(dataset_slug=planted, params={**PARAMS, "seed": 3})
    ClusteringRun.objects.filter(pk=failed.pk).update(status=RunStatus.FAILED)
    with django_capture_on_commit_callbacks(execute=False):
        second = scheduled_rerun_start(dataset_slug=planted, cluster_type="functional")
    assert second is not None and second.params == first.params


@pytest.mark.parametrize("status", [RunStatus.PENDING, RunStatus.RUNNING])
def test_refuses_to_overlap_an_active_clustering_run(
    planted_csv: Path, status: str, django_capture_on_commit_callbacks
) -> None:
    planted = import_planted(planted_csv)
    busy = clustering_run_create(dataset_slug=planted, params=PARAMS)
    ClusteringRun.objects.filter(pk=busy.pk).update(status=status)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert scheduled_rerun_start(dataset_slug=planted, cluster_type="functional") is None
        assert scheduled_rerun(planted, "functional") is None  # the task, run in-process
    assert callbacks == []
    assert ClusteringRun.objects.count() == 1


def test_refuses_to_overlap_a_run_still_summarising(
    planted_csv: Path, django_capture_on_commit_callbacks
) -> None:
    planted = import_planted(planted_csv)
    run = clustering_run_create(dataset_slug=planted, params=PARAMS)
    ClusteringRun.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED)
    GenerationJob.objects.create(
        run=run, provider="extractive", model="m", judge_model="m", status=JobStatus.RUNNING
    )
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert scheduled_rerun_start(dataset_slug=planted, cluster_type="functional") is None
    assert callbacks == [] and ClusteringRun.objects.count() == 1
    # another cluster type than the dataset's kind is refused, not scheduled
    with (
        django_capture_on_commit_callbacks(execute=False) as callbacks,
        pytest.raises(InvalidParameters, match="cluster_type must be 'functional'"),
    ):
        scheduled_rerun_start(dataset_slug=planted, cluster_type="phenotype")
    assert callbacks == [] and ClusteringRun.objects.count() == 1


def test_bad_input_in_the_task_is_logged_not_raised(
    planted_csv: Path, django_capture_on_commit_callbacks, caplog: pytest.LogCaptureFixture
) -> None:
    planted = import_planted(planted_csv)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert scheduled_rerun("no-such-dataset", "functional") is None
        assert scheduled_rerun(planted, "genes") is None
    assert callbacks == [] and not ClusteringRun.objects.exists()
    assert "no-such-dataset" in caplog.text and "genes" in caplog.text


def test_rerun_of_unchanged_data_regenerates_nothing(
    planted_csv: Path, django_capture_on_commit_callbacks
) -> None:
    planted = import_planted(planted_csv)
    first_run = clustering_run_create(dataset_slug=planted, params=PARAMS)
    first = complete_eagerly(first_run)
    assert first.status == JobStatus.SUCCEEDED
    assert first.total == 3 and first.succeeded + first.rejected == 3
    calls = LLMCall.objects.count()
    assert calls > 0

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        run = scheduled_rerun(planted, "functional")
    assert run is not None and len(callbacks) == 1
    rerun = ClusteringRun.objects.get(pk=run)
    assert rerun.params == first_run.params
    second = complete_eagerly(rerun)
    assert second.status == JobStatus.SUCCEEDED
    assert (second.total, second.skipped, second.succeeded, second.failed) == (3, 3, 0, 0)
    tasks = SummaryTask.objects.filter(job=second)
    assert all(t.state == TaskState.SKIPPED for t in tasks)
    assert all(t.last_error.startswith("cache hit") for t in tasks)
    assert LLMCall.objects.count() == calls  # no provider call at all
