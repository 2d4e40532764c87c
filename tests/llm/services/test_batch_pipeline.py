"""Batch mode end to end, for each provider: the real SDK against its emulator, a real worker
for the realtime fallbacks, PostgreSQL and Redis. The test plays beat: it calls the batch driver
(`job_batch_advance`) in a loop, as `llm.poll_batches` does every BATCH_POLL_INTERVAL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from clustering.services import clustering_run_create, clustering_run_execute, dataset_import
from llm.emulators.anthropic import AnthropicEmulator
from llm.emulators.gemini import GeminiEmulator
from llm.emulators.openai import OpenAIEmulator
from llm.models import (
    BatchItem,
    ClusterSummary,
    GenerationJob,
    JobStatus,
    LLMCall,
    ProviderBatch,
    ValidationStatus,
)
from llm.pricing import call_cost
from llm.providers.registry import DEFAULT_MODELS
from llm.services.batches import job_batch_advance, job_batch_begin
from llm.services.generation import job_plan
from llm.services.pipeline import pipeline_start
from tests.conftest import planted_rows
from tests.llm.batch_helpers import KEY_SETTINGS, point_app_at, wait_final
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[3]
PARAMS = {"k": 5, "min_cluster_size": 5}
EMULATORS: dict[str, Any] = {
    "gemini": GeminiEmulator,
    "openai": OpenAIEmulator,
    "anthropic": AnthropicEmulator,
}


@pytest.fixture(params=sorted(EMULATORS))
def provider(request: pytest.FixtureRequest, settings, monkeypatch) -> Iterator[tuple[str, Any]]:
    name = request.param
    monkeypatch.delenv("GOOGLE_GENAI_USE_VERTEXAI", raising=False)
    with EMULATORS[name]() as emu:
        point_app_at(settings, name, emu)
        settings.BATCH_THRESHOLD = 1  # every run goes through the batch API
        yield name, emu


@pytest.fixture
def three_clusters(tmp_path: Path) -> str:
    path = tmp_path / "three.csv"
    rows = planted_rows(groups=3, size=12)
    path.write_text(
        "entity_id,symbol,term_id,term_name,category\n" + "\n".join(",".join(r) for r in rows)
    )
    dataset_import(path=path, slug="three", kind="functional")
    return "three"


def _job_of(run_id: int) -> GenerationJob | None:
    return GenerationJob.objects.filter(run_id=run_id, scope="run").first()


def _drive(run_id: int, timeout: float = 90.0) -> GenerationJob:
    """Play beat until the run's job is final."""

    def final() -> GenerationJob | None:
        job = _job_of(run_id)
        if job is None:
            return None
        if job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
            return job
        if job.mode == GenerationJob.Mode.BATCH:
            job_batch_advance(job_id=job.pk)
        return None

    return wait_until(final, timeout, f"the job of run {run_id} finished", interval=0.2)


def _accepted(emu: Any) -> list[dict[str, Any]]:
    return [s for s in emu.batch_submissions() if s["accepted"]]


def test_a_run_above_the_threshold_goes_through_batch(
    celery_worker, provider, three_clusters
) -> None:
    name, emu = provider
    run = pipeline_start(dataset_slug=three_clusters, params=PARAMS)
    job = _drive(run.pk)
    assert job.mode == GenerationJob.Mode.BATCH
    assert (job.total, job.succeeded, job.failed) == (3, 3, 0)
    batches = ProviderBatch.objects.filter(job=job)
    assert sorted(batches.values_list("kind", flat=True)) == ["generate", "judge"]
    assert set(batches.values_list("state", flat=True)) == {"collected"}
    assert len(_accepted(emu)) == 2  # one generation batch, one judge batch
    assert emu.request_log() == []  # no realtime call at all
    for summary in ClusterSummary.objects.filter(is_current=True):
        assert summary.validation_status == ValidationStatus.VALIDATED
        assert summary.judge_verdict == "accept" and summary.provider == name
    calls = LLMCall.objects.filter(job=job)
    assert calls.count() == 6 and not calls.filter(batch__isnull=True).exists()
    for call in calls:  # priced at the batch rate
        assert call.cost_usd == call_cost(
            call.model, call.input_tokens, call.output_tokens, batch=True
        )
    assert job.cost_usd == sum((c.cost_usd for c in calls), Decimal(0))
    assert job.projected_cost_usd == job.cost_usd
    assert job.progress_message.startswith("Done")


def _planned_batch_job(dataset: str) -> GenerationJob:
    run = clustering_run_create(dataset_slug=dataset, params=PARAMS)
    clustering_run_execute(run_id=run.pk)
    misses = job_plan(run_id=run.pk)
    job = GenerationJob.objects.get(run=run, scope="run")
    job_batch_begin(job_id=job.pk, task_ids=misses)
    return job


def _generate_ids(job: GenerationJob) -> list[str]:
    return sorted(
        BatchItem.objects.filter(batch__job=job, kind="generate").values_list(
            "custom_id", flat=True
        )
    )


def test_partial_item_errors_are_retried_in_realtime(
    celery_worker, provider, three_clusters
) -> None:
    _name, emu = provider
    emu.configure_batches(polls=10_000)  # hold the batch until the script is set
    job = _planned_batch_job(three_clusters)
    job_batch_advance(job_id=job.pk)  # submits the generation batch
    failing = _generate_ids(job)[0]
    emu.configure_batches(error_ids=[failing], polls=0)
    emu.finish_batches()
    job = wait_final(job)
    assert (job.succeeded, job.failed) == (3, 0)
    failed_item = BatchItem.objects.get(custom_id=failing)
    assert failed_item.state == BatchItem.State.FALLBACK
    realtime = LLMCall.objects.filter(job=job, batch__isnull=True)
    assert realtime.filter(kind="generate", status="success").count() == 1
    assert realtime.get(kind="generate").task_id == failed_item.task_id
    assert len([e for e in emu.request_log() if e["target"] == "generate"]) == 1


def test_an_expired_batch_falls_back_for_its_pending_items_only(
    celery_worker, provider, three_clusters
) -> None:
    _name, emu = provider
    emu.configure_batches(polls=10_000)
    job = _planned_batch_job(three_clusters)
    job_batch_advance(job_id=job.pk)
    ids = _generate_ids(job)
    emu.configure_batches(outcome="expired", unprocessed_ids=ids[:2], polls=0)
    emu.finish_batches()
    job_batch_advance(job_id=job.pk)  # collects the expired batch
    assert ProviderBatch.objects.get(job=job, kind="generate").provider_state != ""
    emu.configure_batches(reset=True)
    job = wait_final(job)
    assert (job.succeeded, job.failed) == (3, 0)
    states = dict(BatchItem.objects.filter(custom_id__in=ids).values_list("custom_id", "state"))
    assert states == {ids[0]: "fallback", ids[1]: "fallback", ids[2]: "done"}
    realtime_generate = LLMCall.objects.filter(job=job, batch__isnull=True, kind="generate")
    assert realtime_generate.count() == 2  # the unprocessed items only


def test_batch_and_realtime_give_the_same_summaries_with_shuffled_results(
    celery_worker, provider, settings, three_clusters
) -> None:
    _name, emu = provider
    emu.configure_batches(shuffle=True)
    settings.BATCH_THRESHOLD = 1000  # realtime first
    realtime = _drive(pipeline_start(dataset_slug=three_clusters, params=PARAMS).pk)
    assert realtime.mode == GenerationJob.Mode.REALTIME and realtime.succeeded == 3
    before = {
        s.composition_hash: (s.content, s.judge_verdict, s.judge_reasoning, s.validation_status)
        for s in ClusterSummary.objects.filter(is_current=True)
    }
    settings.BATCH_THRESHOLD = 1
    batch = _drive(pipeline_start(dataset_slug=three_clusters, params=PARAMS, force=True).pk)
    assert batch.mode == GenerationJob.Mode.BATCH and batch.succeeded == 3
    after = {
        s.composition_hash: (s.content, s.judge_verdict, s.judge_reasoning, s.validation_status)
        for s in ClusterSummary.objects.filter(is_current=True)
    }
    assert after == before
    assert ClusterSummary.objects.filter(is_current=False).count() == 3


def test_a_crash_after_submission_adopts_the_batch_instead_of_paying_twice(
    provider, three_clusters
) -> None:
    name, emu = provider
    job = _planned_batch_job(three_clusters)
    # the provider creates the batch, then its answer takes 60 s: the driver is killed meanwhile
    emu.add_batch_fault("timeout", op="create", seconds=60)
    db = connection.settings_dict
    env = {k: v for k, v in os.environ.items() if k != "GOOGLE_GENAI_USE_VERTEXAI"}
    env.update(
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        LLM_PROVIDER=name,
        LLM_MODEL=DEFAULT_MODELS[name],
        LLM_BASE_URL=emu.url,
        LLM_TIMEOUT="120",
        BATCH_THRESHOLD="1",
        **{KEY_SETTINGS[name]: "test-key-not-secret"},
    )
    code = (
        "import django; django.setup();"
        "from llm.services.batches import job_batch_advance;"
        f"job_batch_advance(job_id={job.pk})"
    )
    env["DJANGO_SETTINGS_MODULE"] = "config.settings"
    driver = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env)
    try:
        wait_until(lambda: len(_accepted(emu)) == 1, 60.0, "one batch accepted")
        wait_until(
            lambda: ProviderBatch.objects.filter(job=job, submit_attempts=1).exists(),
            60.0,
            "the first submit attempt recorded",
        )
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    batch = ProviderBatch.objects.get(job=job)
    assert batch.state == ProviderBatch.State.PREPARING and batch.provider_batch_id == ""
    GenerationJob.objects.filter(pk=job.pk).update(driver_lease_until=None)  # the dead driver's
    emu.finish_batches()  # (Anthropic can only identify a batch once it has ended)
    job_batch_advance(job_id=job.pk)
    batch.refresh_from_db()
    assert batch.provider_batch_id == _accepted(emu)[0]["batch_id"]
    job = wait_final(job)
    assert job.succeeded == 3
    # exactly one paid generation batch (the adopted one) and one judge batch
    accepted = [s["batch_id"] for s in _accepted(emu)]
    rows = dict(ProviderBatch.objects.filter(job=job).values_list("kind", "provider_batch_id"))
    assert accepted == [rows["generate"], rows["judge"]]
