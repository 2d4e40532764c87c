"""Drills: a clustering longer than the reconciler's stall threshold (issue 15).

40 planted groups with 100 stability subsamples and 200 rewirings: several seconds of
clustering, the stability step alone longer than ``RECONCILE_STALL_SECONDS`` (2 s). A real
worker computes it; the reconciler runs every second.

1. Alive: beat sends the reconciler, the worker runs it beside the clustering. Expected: the run
   is never re-driven (``redrives`` 0, one execution) although it computed for longer than the
   threshold, because the worker renews ``heartbeat_at`` every half second. Before the
   heartbeat, stall was measured from ``started_at`` and such a run was re-driven while it ran.
2. Hung: the worker is stopped (SIGSTOP) in the middle of the clustering, so its heartbeat stops.
   Expected: the reconciler (this process) re-drives the run within a few thresholds, a second
   worker computes it, and the clusters are stored once.
"""

from __future__ import annotations

import time

import pytest

from clustering.models import Cluster, ClusteringRun, RunStatus
from llm.models import JobStatus
from llm.services.pipeline import pipeline_start
from llm.services.reconcile import reconcile
from tests.drills.conftest import (
    PARAMS,
    Drill,
    final_job,
    import_drill_dataset,
)
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.drill, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

STALL = 2  # seconds
SLOW_PARAMS = {**PARAMS, "stability_repeats": 100, "null_repeats": 200}
SLOW_GROUPS = 40
#: planted groups of the alive-run drill: enough work that the clustering outlasts twice the
#: stall threshold on an idle machine too (40 groups took 3.7 s idle, 12 s under load)
LONG_GROUPS = 100


def test_a_long_clustering_that_is_alive_is_never_redriven(drill: Drill) -> None:
    slug = import_drill_dataset(drill.tmp, groups=LONG_GROUPS)
    env = drill.env(
        LLM_PROVIDER="extractive", RECONCILE_STALL_SECONDS=STALL, RECONCILE_INTERVAL_SECONDS=1
    )
    worker = drill.procs.worker(env, concurrency=3, wait=False)
    beat = drill.procs.beat(env, wait=False)
    drill.procs.wait_ready(worker, beat)
    run = pipeline_start(dataset_slug=slug, params=SLOW_PARAMS)

    job = wait_until(lambda: final_job(run.pk), 240.0, "job final", context=drill.context)
    assert job.status == JobStatus.SUCCEEDED, job.message
    row = ClusteringRun.objects.get(pk=run.pk)
    assert row.status == RunStatus.SUCCEEDED, row.error
    assert (row.redrives, row.attempts) == (0, 1), (row.redrives, row.attempts)
    assert "re-driven stalled clustering runs" not in worker.text()
    computed = row.timings["total"]
    # the drill means something only when the clustering outlasted the threshold, one step too,
    # while the reconciler ran
    assert computed > 2 * STALL, computed
    assert row.timings["stability"] > STALL, row.timings
    reconciles = worker.text().count("Task llm.reconcile[")
    assert reconciles >= 2, worker.text()[-3000:]
    print(
        f"\nheartbeat: clustering computed {computed:.1f} s (stability "
        f"{row.timings['stability']:.1f} s) against a {STALL} s threshold, "
        f"{reconciles} reconciler task log lines, re-driven {row.redrives} times"
    )


def test_a_clustering_whose_heartbeat_stops_is_redriven(drill: Drill) -> None:
    slug = import_drill_dataset(drill.tmp, groups=SLOW_GROUPS)
    env = drill.env(LLM_PROVIDER="extractive", RECONCILE_STALL_SECONDS=STALL)
    first = drill.procs.worker(env, concurrency=2)
    run = pipeline_start(dataset_slug=slug, params=SLOW_PARAMS)

    def clustering_under_way() -> bool:
        row = ClusteringRun.objects.get(pk=run.pk)
        return row.status == RunStatus.RUNNING and row.progress_current >= 3

    wait_until(clustering_under_way, 90.0, "clustering under way", interval=0.05)
    drill.procs.pause(first)  # hung: no heartbeat from now on
    paused = time.monotonic()
    try:
        # renewed heartbeats keep it out of reach for now
        assert reconcile(stall_seconds=STALL)["runs_redriven"] == 0

        def redriven() -> bool:
            return reconcile(stall_seconds=STALL)["runs_redriven"] == 1

        wait_until(redriven, 30.0, "run re-driven after its heartbeat stopped", interval=0.5)
        waited = time.monotonic() - paused
        assert ClusteringRun.objects.get(pk=run.pk).redrives == 1
        drill.procs.worker(env, concurrency=2)
        job = wait_until(lambda: final_job(run.pk), 240.0, "job final", context=drill.context)
    finally:
        drill.procs.resume(first)
    assert job.status == JobStatus.SUCCEEDED, job.message
    row = ClusteringRun.objects.get(pk=run.pk)
    assert row.status == RunStatus.SUCCEEDED and row.redrives == 1
    assert Cluster.objects.filter(run=row).count() == SLOW_GROUPS
    assert STALL <= waited < 10 * STALL + 20, waited
