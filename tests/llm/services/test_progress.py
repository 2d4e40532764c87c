"""Job progress while clusters are summarised: written at most once per
``PROGRESS_MIN_INTERVAL`` per job and process (counting finished tasks reads every task row),
and exact once the job is finalized."""

from __future__ import annotations

from pathlib import Path

import pytest

from clustering.services import clustering_run_create, clustering_run_execute
from llm.models import GenerationJob
from llm.services import steps
from llm.services.generation import job_plan, summary_task_execute
from llm.services.steps import job_finalize
from tests.support.planted_runs import PARAMS, import_planted

pytestmark = pytest.mark.django_db


def _summarise_one_by_one(planted_csv: Path) -> tuple[GenerationJob, list[tuple[int, str]]]:
    slug = import_planted(planted_csv)
    run = clustering_run_create(dataset_slug=slug, params=PARAMS)
    clustering_run_execute(run_id=run.pk)
    seen = []
    for task_id in job_plan(run_id=run.pk):
        summary_task_execute(task_id=task_id)
        job = GenerationJob.objects.get(run=run)
        seen.append((job.progress_current, job.progress_message))
    return job, seen


@pytest.fixture(autouse=True)
def _fresh_throttle() -> None:
    steps._progress_written.clear()


def test_progress_is_written_after_each_cluster_when_not_throttled(
    planted_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(steps, "PROGRESS_MIN_INTERVAL", 0.0)
    _, seen = _summarise_one_by_one(planted_csv)
    assert [done for done, _ in seen] == [1, 2, 3]
    assert all(message.startswith(f"Generating {i + 1}/3") for i, (_, message) in enumerate(seen))


def test_progress_writes_are_throttled_and_finalize_makes_them_exact(
    planted_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(steps, "PROGRESS_MIN_INTERVAL", 3600.0)
    job, seen = _summarise_one_by_one(planted_csv)
    assert [done for done, _ in seen] == [1, 1, 1]  # only the first write within the interval
    assert job_finalize(job_id=job.pk)
    job.refresh_from_db()
    assert (job.progress_current, job.progress_total) == (3, 3)
    assert job.progress_message.startswith("Done: ")
