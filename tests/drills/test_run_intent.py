"""Drills: a re-driven run keeps its intent (issue 15).

The workers' default provider is ``extractive`` (``LLM_PROVIDER``); the cache already holds an
extractive summary of every cluster. A second run asks for ``--force`` with the non-default
provider ``gemini`` (the emulator). Its chain is then lost:

1. the only worker is SIGKILLed while it computes the clustering (a slow one: 40 planted groups,
   100 stability subsamples, 200 rewirings), a new worker starts and the reconciler (this
   process, every half second) re-drives the run once its heartbeat stops;
2. the run is started while no worker runs, and Redis (without persistence) is restarted before
   any worker reads the message; a worker and beat (the reconciler every 2 s) start afterwards.

Expected both times: the re-driven run regenerates every cluster despite the cache, through
gemini with the run's model (every cluster reached the emulator; every summary and call row
says gemini), and the job says force and gemini. Before intents were stored on the run, the
re-driven chain used ``LLM_PROVIDER`` without force: every cluster came from the cache and no
provider call was made.
"""

from __future__ import annotations

from typing import Any

import pytest

from clustering.models import Cluster, ClusteringRun, RunStatus
from llm.models import ClusterSummary, GenerationJob, JobStatus, LLMCall, SummaryTask, TaskState
from llm.services.pipeline import pipeline_start
from llm.services.reconcile import reconcile
from tests.drills.conftest import (
    PARAMS,
    Drill,
    cluster_key,
    final_job,
    import_drill_dataset,
)
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.drill, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

STALL = 2  # seconds, the reconciler's threshold
#: a clustering of several seconds whose stability step alone outlasts STALL
SLOW_PARAMS = {**PARAMS, "stability_repeats": 100, "null_repeats": 200}
SLOW_GROUPS = 40


def _env(drill: Drill, **extra: Any) -> dict[str, str]:
    # extractive is the workers' default: gemini is what the run asks for, not what they use
    return drill.env(LLM_PROVIDER="extractive", RECONCILE_STALL_SECONDS=STALL, **extra)


def _fill_cache(drill: Drill, slug: str) -> int:
    """Summarise every cluster with the default (extractive) provider; returns the number of
    clusters."""
    run = pipeline_start(dataset_slug=slug, params=PARAMS)
    job = wait_until(lambda: final_job(run.pk), 120.0, "cache-filling job", context=drill.context)
    assert job.status == JobStatus.SUCCEEDED, job.message
    assert job.provider == "extractive"
    assert not drill.emulator.request_log(), "the extractive run must not reach the emulator"
    return job.total


def _check_regenerated_with_intent(drill: Drill, run_id: int, clusters: int) -> GenerationJob:
    """Every cluster of the re-driven run was summarised again through gemini with the run's
    stored model, despite the cache; returns the job."""
    run = ClusteringRun.objects.get(pk=run_id)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.redrives >= 1, "the run's chain must have been re-driven"
    assert run.intent["provider"] == "gemini" and run.intent["force"] is True, run.intent
    job = final_job(run_id)
    assert job is not None
    assert job.status == JobStatus.SUCCEEDED, job.message
    assert (job.provider, job.force, job.model) == ("gemini", True, run.intent["model"])
    assert job.judge_model == run.intent["judge_model"]
    tasks = list(SummaryTask.objects.filter(job=job).select_related("cluster", "summary"))
    assert len(tasks) == clusters
    assert all(t.state == TaskState.SUCCEEDED for t in tasks), [
        (t.pk, t.state, t.last_error) for t in tasks if t.state != TaskState.SUCCEEDED
    ]
    seen = drill.emulator.calls_per_cluster()
    for task in tasks:
        assert seen.get(cluster_key(task.cluster.member_symbols), 0) >= 2, task.pk
        assert task.summary is not None and task.summary.provider == "gemini", task.pk
        assert task.summary.is_current and task.summary.model == run.intent["model"]
    calls = LLMCall.objects.filter(job=job)
    assert calls.count() == len(drill.emulator.request_log())
    assert set(calls.values_list("provider", flat=True)) == {"gemini"}
    # the cache's extractive summaries are history now
    assert not ClusterSummary.objects.filter(provider="extractive", is_current=True).exists()
    return job


def test_force_and_provider_survive_a_worker_killed_during_clustering(drill: Drill) -> None:
    slug = import_drill_dataset(drill.tmp, groups=SLOW_GROUPS)
    env = _env(drill)
    first = drill.procs.worker(env, concurrency=2)
    clusters = _fill_cache(drill, slug)

    run = pipeline_start(dataset_slug=slug, params=SLOW_PARAMS, provider="gemini", force=True)

    def clustering_under_way() -> bool:
        row = ClusteringRun.objects.get(pk=run.pk)
        return row.status == RunStatus.RUNNING and row.progress_current >= 3

    wait_until(clustering_under_way, 90.0, "clustering under way", interval=0.05)
    drill.procs.kill(first)  # SIGKILL in the middle of the clustering
    row = ClusteringRun.objects.get(pk=run.pk)
    assert row.status == RunStatus.RUNNING and not Cluster.objects.filter(run=row).exists()
    assert not drill.emulator.request_log()

    drill.procs.worker(env, concurrency=2)

    def finished() -> GenerationJob | None:
        reconcile(stall_seconds=STALL)  # beat's job, played by this process
        return final_job(run.pk)

    wait_until(finished, 180.0, "re-driven job final", interval=0.5, context=drill.context)
    _check_regenerated_with_intent(drill, run.pk, clusters)


def test_force_and_provider_survive_a_redis_restart(drill: Drill) -> None:
    slug = import_drill_dataset(drill.tmp)
    env = _env(drill)
    first = drill.procs.worker(env, concurrency=2)
    clusters = _fill_cache(drill, slug)
    drill.procs.kill(first)

    run = pipeline_start(dataset_slug=slug, params=PARAMS, provider="gemini", force=True)
    wait_until(
        lambda: drill.redis.queue_lengths()["default"] == 1, 10.0, "the run's message queued"
    )
    drill.redis.restart()  # the message is lost with the broker's memory
    assert drill.redis.queue_lengths() == {"default": 0, "llm": 0}

    worker = drill.procs.worker(env, concurrency=2, wait=False)
    beat = drill.procs.beat(env, wait=False)
    drill.procs.wait_ready(worker, beat)
    wait_until(lambda: final_job(run.pk), 180.0, "re-driven job final", context=drill.context)
    _check_regenerated_with_intent(drill, run.pk, clusters)
    assert "re-driven stalled clustering runs" in worker.text(), worker.text()[-3000:]
