"""Drill: every process restarted while provider batches are open.

Twelve planted clusters in batch mode (``BATCH_THRESHOLD=1``) against the Gemini emulator, which
plays the provider and so keeps its batches across our restarts. A worker, ``celery beat`` with
the database scheduler (``llm.poll_batches`` every second and the reconciler every 2 s: the
``BATCH_POLL_INTERVAL`` and ``RECONCILE_INTERVAL_SECONDS`` that beat applies to its rows on
start) and the private Redis. Two restarts of all of them (SIGKILL worker and beat, Redis started
empty):

1. while the generation batch is open at the provider and being polled. Only a ``default``-queue
   worker comes back (the poller's queue; the ``llm`` workers are late), so what the poller sends
   to the realtime path waits in Redis;
2. after the generation batch ended with three items failed (HTTP 503), which the poller handed to
   the realtime path (their messages wait in the ``llm`` queue), and in the middle of submitting
   the judge batch for the others: the provider created it, but its answer never reached the
   driver (the create call hangs), so the row is ``preparing`` with one submit attempt and no
   provider id. Restarting Redis loses the three realtime messages.

A killed driver leaves its lease on the job; the drill runs with ``BATCH_DRIVER_LEASE_SECONDS=20``
(120 in production) and waits for an abandoned lease to expire by itself, so the restarted poller
takes the job over the way it would in production, only sooner.

Expected: polling resumes after each restart, the judge batch is adopted by its display name
instead of being submitted again, the reconciler re-drives the three lost realtime fallbacks, and
the job completes: exactly one accepted submission per batch, realtime calls only for the three
(generate + judge each), one current summary per cluster.
"""

from __future__ import annotations

import time

import pytest
from django.utils import timezone

from llm.models import (
    BatchItem,
    GenerationJob,
    JobStatus,
    LLMCall,
    ProviderBatch,
    SummaryTask,
    TaskState,
)
from llm.services.pipeline import pipeline_start
from tests.drills.conftest import (
    GROUPS,
    PARAMS,
    Drill,
    assert_one_current_summary_per_cluster,
    final_job,
    import_drill_dataset,
    job_of,
)
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.drill, pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]

FALLBACKS = 3  # generation items the provider fails (HTTP 503): redone in realtime
OPEN = (ProviderBatch.State.SUBMITTED, ProviderBatch.State.RUNNING)


LEASE_SECONDS = 20


def _lease_held(job_id: int) -> bool:
    """Whether a driver's lease on the job is live (a killed driver's stays until it expires)."""
    return GenerationJob.objects.filter(pk=job_id, driver_lease_until__gt=timezone.now()).exists()


def _restart_everything(
    drill: Drill, env: dict[str, str], job_id: int, *, queues: str = "default,llm"
) -> bool:
    """SIGKILL worker and beat, restart Redis empty, start a worker (on ``queues``) and beat
    again; returns whether the killed driver left its lease on the job."""
    drill.procs.kill_all()
    drill.redis.restart()
    abandoned = _lease_held(job_id)
    _start_worker_and_beat(drill, env, queues=queues)
    return abandoned


def _start_worker_and_beat(
    drill: Drill, env: dict[str, str], *, queues: str = "default,llm"
) -> None:
    """Start a worker and beat side by side, then wait for both."""
    worker = drill.procs.worker(env, concurrency=2, queues=queues, wait=False)
    beat = drill.procs.beat(env, wait=False)
    drill.procs.wait_ready(worker, beat)


def test_restarting_every_process_resumes_polling_and_never_resubmits(drill: Drill) -> None:
    slug = import_drill_dataset(drill.tmp)
    emulator = drill.emulator
    emulator.configure_batches(polls=10_000)  # batches stay open until the drill lets them go
    env = drill.env(
        BATCH_API_ENABLED="true",
        BATCH_THRESHOLD="1",
        BATCH_POLL_INTERVAL="1",
        BATCH_DRIVER_LEASE_SECONDS=str(LEASE_SECONDS),
        CELERY_TASK_TIME_LIMIT="30",
        LLM_TIMEOUT="30",  # the hung create below must not time out before the kill
    )
    _start_worker_and_beat(drill, env)
    run = pipeline_start(dataset_slug=slug, params=PARAMS, provider="gemini")
    marks = [("start", time.monotonic())]

    # the generation batch is open at the provider and beat polls it
    def polled_generation_batch() -> ProviderBatch | None:
        return ProviderBatch.objects.filter(
            job__run=run, kind="generate", state__in=OPEN, poll_count__gte=2
        ).first()

    generation = wait_until(
        polled_generation_batch, 60.0, "generation batch polled by beat", context=drill.context
    )
    job = job_of(run.pk)
    assert job is not None and job.mode == GenerationJob.Mode.BATCH
    marks.append(("generation batch polled", time.monotonic()))

    # restart 1: everything, while the batch is open; the llm workers are late
    abandoned = [_restart_everything(drill, env, job.pk, queues="default")]
    polls = ProviderBatch.objects.get(pk=generation.pk).poll_count
    wait_until(
        lambda: ProviderBatch.objects.get(pk=generation.pk).poll_count >= polls + 2,
        60.0,  # the killed driver's lease may hold the job for LEASE_SECONDS
        "polling resumed after restart 1",
        context=drill.context,
    )
    marks.append(("restart 1, polling resumed", time.monotonic()))

    # restart 2: the generation batch finishes at its next poll with three items failed, and
    # the provider creates the judge batch but answers only after a minute
    generate_ids = sorted(
        BatchItem.objects.filter(batch=generation).values_list("custom_id", flat=True)
    )
    failing = generate_ids[:FALLBACKS]
    emulator.add_batch_fault("timeout", op="create", seconds=60)
    emulator.configure_batches(polls=0, error_ids=failing, error_code=503)

    def judge_batch_in_limbo() -> ProviderBatch | None:
        created = [s for s in emulator.batch_submissions() if "-judge-" in s["tag"]]
        row = ProviderBatch.objects.filter(
            job=job, kind="judge", state=ProviderBatch.State.PREPARING, submit_attempts=1
        ).first()
        return row if created and row is not None and not row.provider_batch_id else None

    judge = wait_until(
        judge_batch_in_limbo, 60.0, "judge batch created, answer pending", context=drill.context
    )
    marks.append(("judge batch in limbo", time.monotonic()))
    fallbacks = set(
        SummaryTask.objects.filter(job=job, in_batch=False, state=TaskState.PENDING).values_list(
            "pk", flat=True
        )
    )
    assert len(fallbacks) == FALLBACKS, fallbacks
    assert drill.redis.queue_lengths()["llm"] == FALLBACKS, "their messages wait in Redis"
    abandoned.append(_restart_everything(drill, env, job.pk))
    marks.append(("restart 2", time.monotonic()))
    assert abandoned[-1], "the killed driver was submitting, so it held the lease"

    job = wait_until(
        lambda: final_job(run.pk), 90.0, "job final after restart 2", context=drill.context
    )
    marks.append(("job final", time.monotonic()))

    tasks = list(SummaryTask.objects.filter(job=job))
    assert job.status == JobStatus.SUCCEEDED, job.message
    assert len(tasks) >= GROUPS - 1
    assert all(t.state == TaskState.SUCCEEDED for t in tasks), [
        (t.pk, t.state, t.last_error) for t in tasks if t.state != TaskState.SUCCEEDED
    ]
    assert_one_current_summary_per_cluster(job)

    # nothing resubmitted: one accepted submission per batch, the judge batch adopted
    submissions = emulator.batch_submissions()
    accepted = [s for s in submissions if s["accepted"]]
    assert len(submissions) == len(accepted) == 2, submissions
    batches = list(ProviderBatch.objects.filter(job=job).order_by("pk"))
    assert [b.kind for b in batches] == ["generate", "judge"]
    assert all(b.state == ProviderBatch.State.COLLECTED for b in batches)
    assert sorted(s["tag"] for s in accepted) == sorted(b.display_name for b in batches)
    assert sorted(s["batch_id"] for s in accepted) == sorted(b.provider_batch_id for b in batches)
    judge = ProviderBatch.objects.get(pk=judge.pk)
    assert judge.submit_attempts == 1, "the judge batch was submitted again"
    assert judge.request_count == len(tasks) - FALLBACKS

    # the lost fallbacks were re-driven (one re-drive, one claim) and ran in realtime, once
    log = emulator.request_log()
    calls = LLMCall.objects.filter(job=job)
    for task in tasks:
        kinds = sorted(
            (c.kind, c.batch_id is not None, c.status)
            for c in calls.filter(task=task).order_by("pk")
        )
        if task.pk in fallbacks:
            assert (task.redrives, task.deliveries) == (1, 1), (task.pk, task.redrives)
            assert kinds == [
                ("generate", False, "success"),
                ("generate", True, "api_error"),
                ("judge", False, "success"),
            ], (task.pk, kinds)
        else:
            assert kinds == [("generate", True, "success"), ("judge", True, "success")], (
                task.pk,
                kinds,
            )
    assert len(log) == 2 * FALLBACKS, log
    assert {e["status"] for e in log} == {200}
    print(
        f"\nbatch restart: generation batch polled {generation.poll_count}+ times before restart 1"
        f"; leases left by killed drivers (expired after {LEASE_SECONDS} s): {abandoned}; "
        f"submissions {len(submissions)}; "
        f"{FALLBACKS} lost realtime fallbacks re-driven; "
        + ", ".join(f"{name} +{at - marks[0][1]:.1f} s" for name, at in marks[1:])
    )
