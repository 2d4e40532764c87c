"""The summary pipeline end to end: a real Celery worker (threads, in this process) on Redis and
PostgreSQL, the real google-genai SDK talking HTTP to the Gemini emulator.

The dataset has two planted clusters and one unclustered loner (a dataset symbol that is nobody's
member, used as the hallucinated gene). Faults are consumed by whichever request comes first, so
assertions are made over the job, not over a particular cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import transaction

from clustering.services import dataset_import
from llm.emulators.server import EmulatorServer
from llm.models import (
    ClusterSummary,
    GenerationJob,
    JobStatus,
    LLMCall,
    SummaryTask,
    TaskState,
    ValidationStatus,
)
from llm.services.generation import job_plan
from llm.services.pipeline import pipeline_start
from llm.tasks import summarise_cluster
from tests.conftest import planted_rows
from tests.llm.batch_helpers import app_on_emulator
from tests.support.waiting import wait_until
from tests.support.world import client_for, make_user

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

LONER = "LONE1"
PARAMS = {"k": 5, "min_cluster_size": 5}


@pytest.fixture
def gemini(settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorServer]:
    """The app on a Gemini emulator, 5 s calls."""
    with app_on_emulator(settings, monkeypatch, "gemini", timeout=5.0, batch=False) as emulator:
        yield emulator


@pytest.fixture
def two_clusters(tmp_path: Path) -> str:
    rows = planted_rows(groups=2, size=12)
    rows.append(("Z1", LONER, "Tz", "loner term", "CAT"))
    path = tmp_path / "two.csv"
    path.write_text(
        "entity_id,symbol,term_id,term_name,category\n" + "\n".join(",".join(r) for r in rows)
    )
    dataset_import(path=path, slug="two", kind="functional")
    return "two"


def _run(dataset: str, *, force: bool = False, timeout: float = 60.0) -> GenerationJob:
    run = pipeline_start(dataset_slug=dataset, params=PARAMS, force=force)

    def final() -> GenerationJob | None:
        job = GenerationJob.objects.filter(run=run).first()
        done = job is not None and job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED)
        return job if done else None

    return wait_until(final, timeout, f"the job of run {run.pk} finished")


def test_chain_and_chord_complete_with_totals(celery_worker, gemini, two_clusters) -> None:
    job = _run(two_clusters)
    assert job.status == JobStatus.SUCCEEDED
    assert (job.total, job.succeeded, job.failed, job.skipped, job.rejected) == (2, 2, 0, 0, 0)
    summaries = ClusterSummary.objects.filter(is_current=True)
    assert summaries.count() == 2
    for summary in summaries:
        assert summary.validation_status == ValidationStatus.VALIDATED
        assert summary.judge_verdict == "accept" and summary.judge_reasoning
        assert summary.provider == "gemini" and summary.model == "gemini-2.5-flash"
        assert summary.prompt_version == "functional-v2"
        assert summary.derived_confidence in ("high", "medium", "low")
        assert summary.input_tokens > 0 and summary.cost_usd > 0
        assert summary.events.get().to_status == ValidationStatus.VALIDATED
    calls = LLMCall.objects.filter(job=job)
    assert calls.filter(kind="generate", status="success").count() == 2
    assert calls.filter(kind="judge", status="success").count() == 2
    assert len(gemini.request_log()) == 4
    assert job.input_tokens == sum(c.input_tokens for c in calls)
    # exact: the emulator's usage is (len(user) + len(system)) // 4 per request it received
    assert job.input_tokens == sum(e["prompt_tokens"] for e in gemini.request_log())
    assert job.progress_message.startswith("Done")
    # a rerun of the same compositions is served from the cache: no call at all
    again = _run(two_clusters)
    assert (again.total, again.skipped, again.succeeded) == (2, 2, 0)
    assert len(gemini.request_log()) == 4
    # --force regenerates, keeping the history
    forced = _run(two_clusters, force=True)
    assert forced.succeeded == 2 and len(gemini.request_log()) == 8
    assert ClusterSummary.objects.filter(is_current=False).count() == 2


def _wait_job(job_id: int, timeout: float = 60.0) -> GenerationJob:
    def final() -> GenerationJob | None:
        job = GenerationJob.objects.get(pk=job_id)
        done = job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
        return job if done else None

    return wait_until(final, timeout, f"job {job_id} finished")


def test_curator_regenerate_runs_end_to_end(celery_worker, gemini, two_clusters) -> None:
    """A curator's regenerate over the API, executed by the worker: one forced generation and
    judgement of that cluster only, the new summary current, the old one kept as history with
    its human lock lifted and audited, the call paid for on the new job."""
    first = _run(two_clusters)
    old = ClusterSummary.objects.filter(is_current=True).order_by("cluster__number").first()
    assert old is not None and first.status == JobStatus.SUCCEEDED
    ClusterSummary.objects.filter(pk=old.pk).update(human_locked=True)
    other = ClusterSummary.objects.exclude(cluster=old.cluster).get(is_current=True)
    curator = make_user("staff", "curator")
    received = len(gemini.request_log())

    response = client_for(curator).post(f"/api/summaries/{old.pk}/regenerate/", {}, format="json")
    assert response.status_code == 202, response.json()
    job = _wait_job(response.json()["id"])

    assert job.status == JobStatus.SUCCEEDED and (job.total, job.succeeded) == (1, 1)
    assert job.requested_by == curator and job.force
    log = gemini.request_log()[received:]
    assert [e["target"] for e in log] == ["generate", "judge"]
    assert old.cluster is not None
    member = old.cluster.members[0]["symbol"]
    assert member in log[0]["user"]
    new = ClusterSummary.objects.get(cluster=old.cluster, is_current=True)
    assert new.pk != old.pk and new.composition_hash == old.composition_hash
    assert new.judge_verdict == "accept" and new.provider == "gemini"
    old.refresh_from_db()
    assert not old.is_current and not old.human_locked
    assert old.events.filter(user=curator, note__contains="lock lifted").count() == 1
    calls = LLMCall.objects.filter(job=job)
    assert sorted(calls.values_list("kind", flat=True)) == ["generate", "judge"]
    assert job.input_tokens == sum(e["prompt_tokens"] for e in log) and job.cost_usd > 0
    # the other cluster was not touched
    assert ClusterSummary.objects.exclude(cluster=old.cluster).get(is_current=True) == other


def test_reject_then_regenerate_then_accept(celery_worker, gemini, two_clusters) -> None:
    gemini.add_fault("verdict", verdict="reject", reasoning="Themes are not supported by terms.")
    job = _run(two_clusters)
    assert (job.succeeded, job.rejected) == (2, 0)
    attempts = sorted(SummaryTask.objects.filter(job=job).values_list("attempts", flat=True))
    assert attempts == [1, 2]
    retried = SummaryTask.objects.get(job=job, attempts=2)
    assert retried.summary is not None
    assert retried.summary.validation_status == ValidationStatus.VALIDATED
    # the second generation prompt carried the judge's reasoning
    generate_logs = [e for e in gemini.request_log("generate")]
    assert len(generate_logs) == 3


def test_three_rejects_store_rejected_with_reasoning(celery_worker, gemini, two_clusters) -> None:
    gemini.add_fault("verdict", verdict="reject", reasoning="Not grounded in the terms.", times=6)
    job = _run(two_clusters)
    assert (job.succeeded, job.rejected, job.failed) == (0, 2, 0)
    for task in SummaryTask.objects.filter(job=job):
        assert task.state == TaskState.REJECTED and task.attempts == 3
        assert "Not grounded in the terms." in task.last_error
        assert task.summary is not None
        assert task.summary.validation_status == ValidationStatus.REJECTED
        assert task.summary.judge_reasoning == "Not grounded in the terms."
    assert LLMCall.objects.filter(job=job, kind="generate").count() == 6


def test_judge_failure_leaves_summary_pending(celery_worker, gemini, two_clusters) -> None:
    gemini.add_fault("status", target="judge", code=400, times=2)
    job = _run(two_clusters)
    assert job.succeeded == 2
    for summary in ClusterSummary.objects.filter(is_current=True):
        assert summary.validation_status == ValidationStatus.PENDING
        assert summary.judge_verdict == ""
        assert "judge could not be reached" in summary.judge_reasoning
    assert LLMCall.objects.filter(job=job, kind="judge", status="api_error").count() == 2


def test_fenced_json_is_recovered(celery_worker, gemini, two_clusters) -> None:
    gemini.add_fault("fenced", target="generate", times=2)
    job = _run(two_clusters)
    assert job.succeeded == 2
    assert LLMCall.objects.filter(job=job, kind="generate").count() == 2
    assert not LLMCall.objects.filter(job=job).exclude(status="success").exists()
    assert sum(1 for e in gemini.request_log() if e["fault"] == "fenced") == 2


def test_truncated_json_is_counted_and_regenerated(celery_worker, gemini, two_clusters) -> None:
    gemini.add_fault("truncated", target="generate")
    job = _run(two_clusters)
    assert job.succeeded == 2
    failed = LLMCall.objects.get(job=job, status="validation_failed")
    assert failed.kind == "generate" and failed.attempt == 1
    assert failed.task is not None and failed.task.attempts == 2


def test_hallucinated_gene_fails_validation_and_is_regenerated(
    celery_worker, gemini, two_clusters
) -> None:
    gemini.add_fault("hallucinated_gene", target="generate", symbol=LONER)
    job = _run(two_clusters)
    assert job.succeeded == 2
    bad = LLMCall.objects.get(job=job, status="validation_failed")
    assert bad.error_class == "entity_validation" and LONER in bad.error_message
    for summary in ClusterSummary.objects.filter(is_current=True):
        assert LONER not in summary.summary_text


def test_429_retry_after_is_honoured(celery_worker, gemini, two_clusters) -> None:
    gemini.add_fault("status", target="generate", code=429, retry_after=1.5)
    job = _run(two_clusters)
    assert job.succeeded == 2
    limited = LLMCall.objects.get(job=job, status="api_error")
    assert "429" in limited.error_class and limited.try_number == 1
    retry = LLMCall.objects.get(task=limited.task, kind="generate", try_number=2)
    assert retry.status == "success"
    log = gemini.request_log("generate")
    first_429 = next(e for e in log if e["status"] == 429)
    # the retry of that task came at least Retry-After seconds later
    later = [e["monotonic"] - first_429["monotonic"] for e in log if e["seq"] > first_429["seq"]]
    assert max(later) >= 1.5


def test_no_key_skips_every_cluster_without_a_call(
    celery_worker, gemini, settings, two_clusters
) -> None:
    settings.GEMINI_API_KEY = ""
    job = _run(two_clusters)
    assert job.status == JobStatus.SUCCEEDED
    assert (job.total, job.skipped, job.succeeded) == (2, 2, 0)
    assert "GEMINI_API_KEY" in job.message
    assert gemini.request_log() == []
    assert not LLMCall.objects.exists()


def test_task_delivered_twice_makes_one_summary_and_one_set_of_calls(
    celery_worker, gemini, two_clusters
) -> None:
    gemini.configure(latency=0.5)
    from clustering.services import clustering_run_create, clustering_run_execute

    run = clustering_run_create(dataset_slug=two_clusters, params=PARAMS)
    clustering_run_execute(run_id=run.pk)
    with transaction.atomic():
        misses = job_plan(run_id=run.pk)
    task_id = misses[0]
    first = summarise_cluster.delay(task_id)
    second = summarise_cluster.delay(task_id)  # the same message delivered twice, concurrently
    first.get(timeout=30)
    second.get(timeout=30)
    summarise_cluster.delay(task_id).get(timeout=30)  # and once more after it finished
    task = SummaryTask.objects.get(pk=task_id)
    assert task.state == TaskState.SUCCEEDED
    assert ClusterSummary.objects.filter(is_current=True).count() == 1
    assert LLMCall.objects.filter(task=task).count() == 2  # one generate, one judge
    assert len(gemini.request_log()) == 2


def test_phenotype_run_completes_with_verdicts(celery_worker, gemini, tmp_path: Path) -> None:
    """The emulator's phenotype answers pass the product's own validation (no gene named, modes
    and syndromicity from the figures), so every cluster is judged."""
    rows = [(e, s, t, n, "HPO") for e, s, t, n, _ in planted_rows(groups=2, size=12)]
    path = tmp_path / "phenotypes.csv"
    path.write_text(
        "entity_id,symbol,term_id,term_name,category\n" + "\n".join(",".join(r) for r in rows)
    )
    dataset_import(path=path, slug="pheno", kind="phenotype")
    job = _run("pheno")
    assert (job.total, job.succeeded, job.failed, job.rejected) == (2, 2, 0, 0)
    for summary in ClusterSummary.objects.filter(is_current=True, cluster_type="phenotype"):
        assert summary.judge_verdict == "accept" and summary.prompt_version == "phenotype-v2"
        assert summary.attempts == 1 and summary.validation_failures == []
    assert LLMCall.objects.filter(job=job, status="validation_failed").count() == 0
