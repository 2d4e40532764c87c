"""Drills: restart Redis (without persistence) in the middle of a realtime run.

Twelve planted clusters, the Gemini emulator answering after 0.5 s, one worker with two threads
(so most clusters wait in the queue), summary-task leases of 10 s, and ``celery beat`` with the
database scheduler running the reconciler every 2 s (threshold ``RECONCILE_STALL_SECONDS=2``).
While clusters are finished, running and queued, the private redis-server is killed and started
empty on the same port: the queued messages, the chord's counter and its callback are gone.

1. A quick restart: worker and beat are paused (SIGSTOP) while the server is killed and started
   again, so no Redis command of theirs falls into the gap (the second drill covers that), and
   resumed; their connections are dead and the queues empty. Expected: worker and beat
   reconnect, the reconciler (sent by beat, run by the worker) re-drives the clusters whose
   messages were lost once the worker is idle and finalizes the job: every cluster succeeded and
   was judged, exactly one current summary each, no cluster summarised twice.
2. A realistic restart: Redis is down for 12 s while a cluster waits for its generation answer,
   so its next step (the judge call) needs the shared rate limiter, which lives in Redis. The run
   must still complete (checked strictly), and the cluster must not be failed or left unjudged
   because of the outage (see :class:`RateLimiterOutageBug`: the limiter now waits for Redis
   instead of failing the call).
"""

from __future__ import annotations

import time

import pytest

from llm.models import TERMINAL_STATES, JobStatus, LLMCall, SummaryTask, TaskState
from llm.services.pipeline import pipeline_start
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
from tests.support.workers import CeleryProcess

pytestmark = [pytest.mark.drill, pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

LATENCY = 0.5  # seconds per provider answer
CALLS_PER_CLUSTER = 2  # generate + judge
CONCURRENCY = 2  # worker threads, and so messages the worker holds at most
YOUNG = 0.25  # seconds: an open request younger than this has at least 0.25 s to go
OUTAGE = 12.0  # seconds: well past redis-py's own retries (10 tries, at most ~5.3 s of backoff)


class RateLimiterOutageBug(AssertionError):
    """Regression: a Redis outage failed or un-judged the clusters in flight (fixed: the limiter
    treats an unreachable Redis as "no slot yet" and waits within its max_wait).

    ``llm/services/calls.py`` ``provider_call`` takes a slot from the shared rate limiter
    (``limiter.acquire``, ``llm/ratelimit.py``, a Lua script on Redis) inside the same ``try`` as
    the provider call; the limiter's ``redis.exceptions.ConnectionError`` falls into the generic
    ``except Exception`` and becomes ``ProviderError(transient=False)``: not retried, recorded as
    an ``api_error`` LLMCall for a request the provider never received, and then a generation
    fails the cluster ("generation attempt 1: ConnectionError: Error 111 connecting to ...") and
    a judge call stores the summary unjudged ("The judge could not be reached ...").
    """


def _start(drill: Drill) -> tuple[CeleryProcess, CeleryProcess, int]:
    slug = import_drill_dataset(drill.tmp)
    drill.emulator.configure(latency=LATENCY)
    env = drill.env(CELERY_TASK_TIME_LIMIT="10", RECONCILE_STALL_SECONDS="2")
    worker = drill.procs.worker(env, concurrency=CONCURRENCY, wait=False)
    beat = drill.procs.beat(env, wait=False)
    drill.procs.wait_ready(worker, beat)
    run = pipeline_start(dataset_slug=slug, params=PARAMS, provider="gemini")
    return worker, beat, run.pk


def _young_open_requests(drill: Drill, target: str | None = None) -> list[dict[str, object]]:
    now = time.monotonic()
    return [
        e
        for e in drill.emulator.request_log(target)
        if e["status"] is None and now - float(e["monotonic"]) < YOUNG
    ]


def _queued_and_running(drill: Drill, run_id: int) -> tuple[int, int, int] | None:
    """(finished, running, queued messages) of the run, or None before it has a job."""
    job = job_of(run_id)
    if job is None:
        return None
    tasks = SummaryTask.objects.filter(job=job)
    done = tasks.filter(state__in=TERMINAL_STATES).count()
    running = tasks.filter(state=TaskState.RUNNING).count()
    return done, running, drill.redis.queue_lengths()["llm"]


def _waiting_tasks(run_id: int) -> set[int]:
    """Clusters not started yet: their messages were queued in Redis (lost by the restart) or,
    at most CONCURRENCY of them, already handed to the worker."""
    job = job_of(run_id)
    assert job is not None
    return set(
        SummaryTask.objects.filter(job=job, state=TaskState.PENDING).values_list("pk", flat=True)
    )


def _check_completed_by_the_reconciler(
    drill: Drill,
    worker: CeleryProcess,
    beat: CeleryProcess,
    run_id: int,
    waiting: set[int],
    *,
    judged: bool,
) -> list[SummaryTask]:
    """The run is final; the clusters that were waiting at the restart succeeded with a judged
    summary, those whose message was lost (all but at most CONCURRENCY already in the worker's
    hands) after one re-drive each; every cluster has one current summary and was never
    summarised twice. With ``judged``, every cluster succeeded and was judged. Returns the
    tasks."""
    job = final_job(run_id)
    assert job is not None
    assert worker.alive and beat.alive, drill.procs.tails()
    assert job.status == JobStatus.SUCCEEDED, job.message
    tasks = list(SummaryTask.objects.filter(job=job).select_related("cluster", "summary"))
    assert len(tasks) >= GROUPS - 1
    assert all(t.state in TERMINAL_STATES for t in tasks)
    assert job.succeeded + job.failed == len(tasks), job.progress_message
    for task in tasks:
        if judged or task.pk in waiting:
            assert task.state == TaskState.SUCCEEDED, (task.pk, task.state, task.last_error)
            assert task.summary is not None and task.summary.judge_verdict, task.pk
        if task.pk in waiting:
            # one claim, after one re-drive by the reconciler when its message was lost
            assert (task.deliveries, task.redrives) in ((1, 0), (1, 1)), (
                task.pk,
                task.deliveries,
                task.redrives,
            )
    redriven = [t.pk for t in tasks if t.pk in waiting and t.redrives == 1]
    assert len(redriven) >= max(1, len(waiting) - CONCURRENCY), (waiting, redriven)
    if judged:
        assert_one_current_summary_per_cluster(job)
    assert "re-driven" in worker.text(), worker.text()[-3000:]
    assert "llm.reconcile" in beat.text(), beat.text()[-3000:]
    seen = drill.emulator.calls_per_cluster()
    for task in tasks:
        calls = seen.get(cluster_key(task.cluster.member_symbols), 0)
        assert calls <= CALLS_PER_CLUSTER, (task.pk, calls)
    return tasks


def test_a_broker_restart_delays_the_run_and_the_reconciler_completes_it(drill: Drill) -> None:
    worker, beat, run_id = _start(drill)

    def in_the_middle() -> bool:
        counts = _queued_and_running(drill, run_id)
        if counts is None:
            return False
        done, running, queued = counts
        return done >= 2 and queued >= 3 and running >= 1

    wait_until(in_the_middle, 90.0, "run in the middle", interval=0.05, context=drill.context)
    for proc in (worker, beat):
        drill.procs.pause(proc)
    try:
        drill.redis.restart()
    finally:
        for proc in (worker, beat):
            drill.procs.resume(proc)
    restarted = time.monotonic()
    waiting = _waiting_tasks(run_id)
    assert len(waiting) > CONCURRENCY, "some clusters must have been waiting in the queue"
    assert drill.redis.queue_lengths() == {"default": 0, "llm": 0}, "the restart kept messages"

    wait_until(
        lambda: final_job(run_id), 90.0, "job final after the restart", context=drill.context
    )
    recovery = time.monotonic() - restarted
    tasks = _check_completed_by_the_reconciler(drill, worker, beat, run_id, waiting, judged=True)
    redriven = sum(t.pk in waiting and t.redrives == 1 for t in tasks)
    print(
        f"\nredis restart: {len(waiting)} cluster(s) waiting, {redriven} lost their message and "
        f"were re-driven; job final {recovery:.1f} s after the restart"
    )


def test_a_redis_outage_does_not_fail_or_unjudge_clusters_in_flight(drill: Drill) -> None:
    worker, beat, run_id = _start(drill)

    def generation_in_flight() -> bool:
        counts = _queued_and_running(drill, run_id)
        if counts is None:
            return False
        done, _running, queued = counts
        return done >= 2 and queued >= 3 and bool(_young_open_requests(drill, "generate"))

    wait_until(generation_in_flight, 90.0, "generation in flight", interval=0.02)
    generating = {e["cluster"] for e in _young_open_requests(drill, "generate")}
    drill.redis.kill()
    time.sleep(OUTAGE)
    drill.redis.start()
    waiting = _waiting_tasks(run_id)
    assert len(waiting) > CONCURRENCY, "some clusters must have been waiting in the queue"

    wait_until(lambda: final_job(run_id), 90.0, "job final after the outage", context=drill.context)
    # the run completes: checked strictly, these failures are not the known bug
    tasks = _check_completed_by_the_reconciler(drill, worker, beat, run_id, waiting, judged=False)

    # the regression: clusters in flight failed or went unjudged because Redis was away, and
    # the provider call log has calls the provider never received
    hurt = [
        (t.pk, t.state, t.last_error or (t.summary.judge_reasoning if t.summary else ""))
        for t in tasks
        if t.state != TaskState.SUCCEEDED or t.summary is None or not t.summary.judge_verdict
    ]
    phantom = list(
        LLMCall.objects.filter(error_message__contains=f"127.0.0.1:{drill.redis.port}").values_list(
            "task_id", "kind", "error_message"
        )
    )
    received = len(drill.emulator.request_log())
    if hurt or phantom or received != LLMCall.objects.count():
        raise RateLimiterOutageBug(
            f"clusters waiting for a generation at the outage: {len(generating)}; failed or "
            f"unjudged: {hurt}; calls on record the provider never received: {phantom}; "
            f"provider received {received}, on record {LLMCall.objects.count()}"
        )
    assert_one_current_summary_per_cluster(final_job(run_id))  # type: ignore[arg-type]
