"""Drills: a cancel stops the work, not only the status (issue 12, item 4).

1. Mid-summarisation: twelve clusters, the Gemini emulator answering after 1 s, one worker with
   four threads (four summary tasks in flight). The run is cancelled (``pipeline_cancel``, what
   ``POST /api/runs/{id}/cancel/`` and the admin call) while clusters are finished, running and
   queued. Expected: after the cancel returns, at most four provider requests start (one per
   worker slot: a task that passed its check just before the cancel); the calls in flight finish
   and are recorded; the queued clusters are skipped ("job cancelled") without a call; the
   reconciler does not bring the job back; the job stays cancelled.
2. Mid-clustering (a slow clustering: 40 planted groups, 100 subsamples, 200 rewirings), with
   the thread pool (the worker stops at its next step) and the prefork pool (the production
   default; the task is also revoked and terminated). Expected: no further step is recorded or
   logged after the cancel, no cluster is stored, no summary job runs, the run stays cancelled.
"""

from __future__ import annotations

import re
import time

import pytest

from clustering.models import Cluster, ClusteringRun, RunStatus
from llm.models import TERMINAL_STATES, GenerationJob, JobStatus, LLMCall, SummaryTask, TaskState
from llm.services.pipeline import CANCELLED_MESSAGE, pipeline_cancel, pipeline_start
from llm.services.reconcile import reconcile
from tests.drills.conftest import PARAMS, Drill, import_drill_dataset, job_of
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.drill, pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]

LATENCY = 1.0  # seconds per provider answer
SLOTS = 4  # worker threads: summary tasks in flight at most
STALL = 2  # seconds, the reconciler's threshold
SLOW_PARAMS = {**PARAMS, "stability_repeats": 100, "null_repeats": 200}
SLOW_GROUPS = 40
STABILITY_STEP = 5  # progress_current while the stability subsamples are computed


def test_cancel_mid_summarisation_starts_no_new_provider_call(drill: Drill) -> None:
    slug = import_drill_dataset(drill.tmp)
    drill.emulator.configure(latency=LATENCY)
    env = drill.env(RECONCILE_STALL_SECONDS=STALL)
    drill.procs.worker(env, concurrency=SLOTS)
    run = pipeline_start(dataset_slug=slug, params=PARAMS, provider="gemini")

    def open_requests() -> int:
        return sum(e["status"] is None for e in drill.emulator.request_log())

    def in_the_middle() -> bool:
        job = job_of(run.pk)
        if job is None:
            return False
        tasks = SummaryTask.objects.filter(job=job)
        done = tasks.filter(state__in=TERMINAL_STATES).count()
        pending = tasks.filter(state=TaskState.PENDING).count()
        return done >= 1 and pending >= 2 and open_requests() >= SLOTS - 1

    wait_until(in_the_middle, 90.0, "summarisation in the middle", interval=0.05)
    pipeline_cancel(run_id=run.pk)
    snapshot = drill.emulator.request_log()
    acknowledged = len(snapshot)
    # tasks whose request is open make no further call; only the other slots may start one
    open_at_ack = sum(e["status"] is None for e in snapshot)
    job = job_of(run.pk)
    assert job is not None and job.status == JobStatus.CANCELLED

    def quiet() -> bool:
        reconcile(stall_seconds=STALL)  # must not bring anything back
        running = SummaryTask.objects.filter(job=job, state=TaskState.RUNNING).exists()
        return not running and open_requests() == 0

    wait_until(quiet, 60.0, "in-flight work finished after the cancel", context=drill.context)
    # a quiet period of several answers' worth: nothing else starts
    until = time.monotonic() + 3 * LATENCY + STALL
    while time.monotonic() < until:
        reconcile(stall_seconds=STALL)
        time.sleep(0.5)
    log = drill.emulator.request_log()
    after = len(log) - acknowledged
    assert after <= SLOTS - open_at_ack, (after, open_at_ack, acknowledged)
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    tasks = list(SummaryTask.objects.filter(job=job))
    assert all(t.state in TERMINAL_STATES for t in tasks), [(t.pk, t.state) for t in tasks]
    skipped = [t for t in tasks if t.state == TaskState.SKIPPED]
    assert len(skipped) >= 2 and all(t.last_error == CANCELLED_MESSAGE for t in skipped)
    assert LLMCall.objects.filter(job=job).count() == len(log), "every request is on record"
    print(
        f"\ncancel: {acknowledged} provider request(s) before the cancel returned "
        f"({open_at_ack} in flight), {after} after ({SLOTS} worker slots); {len(skipped)} of "
        f"{len(tasks)} clusters skipped"
    )


_STEP = re.compile(r"clustering run (\d+): step (\d+)/")


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_cancel_mid_clustering_stops_computing(drill: Drill, pool: str) -> None:
    slug = import_drill_dataset(drill.tmp, groups=SLOW_GROUPS)
    env = drill.env(RECONCILE_STALL_SECONDS=STALL)
    worker = drill.procs.worker(env, concurrency=2, pool=pool)
    run = pipeline_start(dataset_slug=slug, params=SLOW_PARAMS, provider="gemini")

    def in_stability() -> bool:
        row = ClusteringRun.objects.get(pk=run.pk)
        return row.status == RunStatus.RUNNING and row.progress_current >= STABILITY_STEP

    wait_until(in_stability, 120.0, "clustering in its stability step", interval=0.05)
    cancelled = pipeline_cancel(run_id=run.pk)
    assert cancelled.status == RunStatus.CANCELLED
    step_at_cancel = ClusteringRun.objects.get(pk=run.pk).progress_current

    # the thread pool cannot terminate a task: its worker stops at the next step; a prefork
    # child is terminated at once
    sign = (
        f"Terminating {cancelled.task_id}"
        if pool == "prefork"
        else f"clustering run {run.pk} cancelled: stopped computing"
    )
    wait_until(lambda: sign in worker.text(), 60.0, "the worker stopped", context=drill.procs.tails)
    # long enough for the computation, had it gone on, to reach its next steps
    deadline = time.monotonic() + 15.0
    while time.monotonic() < deadline:
        row = ClusteringRun.objects.get(pk=run.pk)
        assert row.progress_current == step_at_cancel
        time.sleep(0.5)
    logged = [int(step) for rid, step in _STEP.findall(worker.text()) if int(rid) == run.pk]
    assert logged and max(logged) <= step_at_cancel, (logged, step_at_cancel)
    row = ClusteringRun.objects.get(pk=run.pk)
    assert row.status == RunStatus.CANCELLED
    assert not Cluster.objects.filter(run=row).exists()
    assert not GenerationJob.objects.filter(run=row).exclude(status=JobStatus.CANCELLED).exists()
    assert not drill.emulator.request_log()
    assert worker.alive
    print(f"\ncancel ({pool}): stopped at step {step_at_cancel}, logged steps {logged}")
