"""Drill: terminate the workers' PostgreSQL connections in the middle of a realtime run.

Twelve planted clusters, the Gemini emulator answering after 0.5 s, one worker with four threads
whose connections carry ``application_name=drill-worker``, summary-task leases of 10 s. While
provider requests are open, this process runs ``pg_terminate_backend`` on every connection of
that application name, three times, a second apart; then it plays beat (``reconcile()`` every
half second, 2 s threshold).

Expected: tasks recover. The worker survives, every cluster ends succeeded (a lost connection is
not a failed cluster), every cluster has exactly one current summary, and the job is final.
"""

from __future__ import annotations

import time

import pytest
from django.db import connection

from llm.models import (
    TERMINAL_STATES,
    GenerationJob,
    JobStatus,
    LLMCall,
    SummaryTask,
    TaskState,
)
from llm.services.pipeline import pipeline_start
from llm.services.reconcile import reconcile
from tests.drills.conftest import (
    GROUPS,
    PARAMS,
    Drill,
    assert_one_current_summary_per_cluster,
    cluster_key,
    final_job,
    import_drill_dataset,
    job_of,
)
from tests.support.waiting import wait_until
from tests.support.workers import subprocess_database_url

pytestmark = [pytest.mark.drill, pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

LATENCY = 0.5  # seconds per provider answer
LEASE = 10  # seconds, CELERY_TASK_TIME_LIMIT of the worker
STALL = 2  # seconds, the reconciler's threshold
APPLICATION = "drill-worker"
TERMINATIONS = 3
CALLS_PER_CLUSTER = 2  # generate + judge


def _terminate_worker_connections() -> int:
    """pg_terminate_backend on every connection of the drill's worker; returns how many."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = %s "
            "AND pid <> pg_backend_pid()",
            [APPLICATION],
        )
        return int(cursor.fetchone()[0])


def test_terminated_database_connections_do_not_lose_or_fail_clusters(drill: Drill) -> None:
    slug = import_drill_dataset(drill.tmp)
    drill.emulator.configure(latency=LATENCY)
    env = drill.env(
        DATABASE_URL=subprocess_database_url(application_name=APPLICATION),
        CELERY_TASK_TIME_LIMIT=LEASE,
    )
    worker = drill.procs.worker(env, concurrency=4)
    run = pipeline_start(dataset_slug=slug, params=PARAMS, provider="gemini")

    def in_the_middle() -> bool:
        job = job_of(run.pk)
        if job is None:
            return False
        tasks = SummaryTask.objects.filter(job=job)
        done = tasks.filter(state__in=TERMINAL_STATES).count()
        pending = tasks.filter(state=TaskState.PENDING).count()
        open_requests = [e for e in drill.emulator.request_log() if e["status"] is None]
        return done >= 2 and pending >= 2 and len(open_requests) >= 2

    wait_until(in_the_middle, 90.0, "run in the middle", interval=0.05, context=drill.context)
    terminated = []
    for round_no in range(TERMINATIONS):
        if round_no:
            time.sleep(1.0)
        terminated.append(_terminate_worker_connections())
    assert sum(terminated) >= 1, "no worker connection was open to terminate"

    started = time.monotonic()

    def finished() -> GenerationJob | None:
        reconcile(stall_seconds=STALL)  # beat's job, played by this process
        return final_job(run.pk)

    job = wait_until(finished, 90.0, "job final after the terminations", context=drill.context)
    recovery = time.monotonic() - started

    assert worker.alive, f"the worker died with its connections\n{drill.procs.tails()}"
    tasks = list(SummaryTask.objects.filter(job=job).select_related("cluster"))
    assert job.status == JobStatus.SUCCEEDED, job.message
    assert len(tasks) >= GROUPS - 1
    assert all(t.state == TaskState.SUCCEEDED for t in tasks), [
        (t.pk, t.state, t.last_error) for t in tasks if t.state != TaskState.SUCCEEDED
    ]
    assert job.succeeded == len(tasks) and job.failed == 0
    assert_one_current_summary_per_cluster(job)

    # the terminations hit work in progress, and it was taken over
    log = worker.text()
    assert "terminating connection due to administrator command" in log or (
        "OperationalError" in log
    ), log[-3000:]
    recovered = [t.pk for t in tasks if t.deliveries >= 2 or t.redrives >= 1]
    assert recovered, "no task needed a second delivery: the drill hit nothing"

    # no cluster was summarised twice: a re-delivery repeats at most the call it lost
    seen = drill.emulator.calls_per_cluster()
    for task in tasks:
        calls = seen.get(cluster_key(task.cluster.member_symbols), 0)
        assert calls <= CALLS_PER_CLUSTER + (task.deliveries - 1), (task.pk, calls, task.deliveries)
        assert LLMCall.objects.filter(task=task, status="success").count() >= CALLS_PER_CLUSTER
    print(
        f"\npostgres terminate: {terminated} connection(s) terminated, {len(recovered)} task(s) "
        f"re-delivered; final {recovery:.1f} s after the first termination round ended"
    )
