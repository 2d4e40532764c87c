"""Drill: SIGKILL both workers while provider calls are in flight, then finish the run.

Twelve planted clusters, the Gemini emulator answering after 2 s, two workers with three threads
each, summary-task leases of 10 s. Both workers are killed while at least two requests are open
at the emulator (received, not yet answered); a new worker and this process's ``reconcile()``
(beat's job) then finish the run.

Expected: every request the emulator received has an ``LLMCall`` row (a call row is committed
``started`` before its request leaves), no row is left ``started``, the rows of the calls the
killed workers never completed are ``unknown`` outcome at their projected cost, and the job's
cost includes them, marked (``unknown_calls``, ``unknown_cost_usd``). Before the rows were
written first, 59 rows were left for 63 requests in the same drill (issue 15).
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from llm.models import GenerationJob, JobStatus, LLMCall, SummaryTask
from llm.services.pipeline import pipeline_start
from llm.services.reconcile import reconcile
from tests.drills.conftest import (
    PARAMS,
    Drill,
    assert_one_current_summary_per_cluster,
    cluster_key,
    final_job,
    import_drill_dataset,
    job_of,
)
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.drill, pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]

LATENCY = 2.0  # seconds per provider answer: calls stay in flight long enough to be killed
LEASE = 10  # seconds, CELERY_TASK_TIME_LIMIT of the workers (the summary task lease)
STALL = 2  # seconds, the reconciler's threshold


def test_calls_killed_in_flight_are_on_record_and_in_the_cost(drill: Drill) -> None:
    slug = import_drill_dataset(drill.tmp)
    drill.emulator.configure(latency=LATENCY)
    env = drill.env(CELERY_TASK_TIME_LIMIT=LEASE)
    workers = [drill.procs.worker(env, concurrency=3) for _ in range(2)]
    run = pipeline_start(dataset_slug=slug, params=PARAMS, provider="gemini")

    def open_requests() -> list[dict[str, object]]:
        return [e for e in drill.emulator.request_log() if e["status"] is None]

    wait_until(
        lambda: len(open_requests()) >= 2,
        120.0,
        "two requests in flight",
        interval=0.05,
        context=drill.context,
    )
    for worker in workers:
        drill.procs.kill(worker)  # SIGKILL: the calls in flight are never completed
    open_at_kill = len(open_requests())
    job = job_of(run.pk)
    assert job is not None
    # nothing records the open calls now; their rows were committed before they left
    assert LLMCall.objects.filter(job=job, status=LLMCall.Status.STARTED).count() >= open_at_kill

    drill.procs.worker(env, concurrency=3)

    def finished() -> GenerationJob | None:
        reconcile(stall_seconds=STALL)  # beat's job, played by this process
        return final_job(run.pk)

    wait_until(finished, 150.0, "job final after the kill", interval=0.5, context=drill.context)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.message
    assert_one_current_summary_per_cluster(job)

    rows = list(LLMCall.objects.filter(job=job).select_related("task__cluster"))
    received = drill.emulator.request_log()
    # every request the provider received is on record (a row whose request never left may
    # exist too: the worker died between the commit and the send)
    assert len(rows) >= len(received), (len(rows), len(received))
    seen = drill.emulator.calls_per_cluster()
    seen.pop(None, None)  # cut short by the kill: unreadable, the provider answered 400
    for task in SummaryTask.objects.filter(job=job).select_related("cluster"):
        key = cluster_key(task.cluster.member_symbols)
        recorded = sum(1 for r in rows if r.task_id == task.pk)
        assert recorded >= seen.get(key, 0), (task.pk, recorded, seen.get(key, 0))

    assert not [r.pk for r in rows if r.status == LLMCall.Status.STARTED]
    unknown = [r for r in rows if r.status == LLMCall.Status.UNKNOWN]
    assert len(unknown) >= open_at_kill >= 2
    assert all(r.cost_usd == r.projected_cost_usd > 0 for r in unknown)
    assert job.unknown_calls == len(unknown)
    assert job.unknown_cost_usd == sum((r.cost_usd for r in unknown), Decimal(0))
    assert job.cost_usd == sum((r.cost_usd for r in rows), Decimal(0))
    assert job.cost_usd > job.unknown_cost_usd > 0
    print(
        f"\ncalls in flight: {open_at_kill} request(s) open at the kill, {len(received)} "
        f"received, {len(rows)} rows, {len(unknown)} of unknown outcome "
        f"(${job.unknown_cost_usd} projected of ${job.cost_usd})"
    )
