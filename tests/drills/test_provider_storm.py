"""Drill: a provider storm. Half of the provider's answers are 503 or 429, most with a wait
hint (Retry-After header or Gemini's RetryInfo), and two are permanent 400s.

Twelve planted clusters, one worker with four threads, ``LLM_CALL_TRIES=3``, 0.15 s per answer.
The fault script is a fixed pseudo-random sequence consumed in arrival order (FIFO), so which
cluster gets which answer depends on timing, but the storm's shape does not.

Expected (issue 11): every cluster ends succeeded (a summary; pending review when its judge call
failed) or, only after a permanent error of its generation, failed with the reason; the retry
budget holds: per call at most ``LLM_CALL_TRIES`` tries that failed for other reasons than a 429
(429s wait for capacity and use no try), retries only after transient errors, a permanent error
is never retried, a transient failure after the last try sends the cluster back to the queue
(a new run of tries, same attempt) instead of failing it, a failed generation is not
regenerated, the wait hint is honoured, and the provider saw exactly the calls on record.
"""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from typing import Any

import pytest

from llm.models import JobStatus, LLMCall, SummaryTask, TaskState, ValidationStatus
from llm.services.pipeline import pipeline_start
from tests.drills.conftest import (
    GROUPS,
    PARAMS,
    Drill,
    cluster_key,
    final_job,
    import_drill_dataset,
)
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.drill, pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

LATENCY = 0.15  # seconds per provider answer
TRIES = 3  # LLM_CALL_TRIES
HINT = 1  # seconds of Retry-After / retryDelay in the storm
PERMANENT_AT = (3, 11)  # positions of the 400 answers in the script
SEED = 6
TOLERANCE = 0.05  # seconds of clock and scheduling slack when checking waits


def storm_script(length: int = 300) -> list[dict[str, Any]]:
    """The fault script: each answer is, with probability 1/2, a 503 (half of them with a
    Retry-After header) or a 429 (Retry-After header or RetryInfo, alternately); else a normal
    answer (a zero-second latency fault, which consumes the slot). Two 400s at PERMANENT_AT."""
    rng = random.Random(SEED)
    script: list[dict[str, Any]] = []
    for position in range(length):
        if position in PERMANENT_AT:
            script.append({"kind": "status", "code": 400, "message": "Drill: invalid argument."})
        elif rng.random() < 0.5:
            fault: dict[str, Any] = {"kind": "status", "code": rng.choice([503, 429])}
            if fault["code"] == 503 and rng.random() < 0.5:
                fault["retry_after"] = HINT
            elif fault["code"] == 429:
                fault["retry_after" if position % 2 else "retry_delay"] = HINT
            script.append(fault)
        else:
            script.append({"kind": "latency", "seconds": 0})
    return script


def test_a_provider_storm_ends_every_cluster_within_the_retry_budget(drill: Drill) -> None:
    slug = import_drill_dataset(drill.tmp)
    drill.emulator.configure(latency=LATENCY)
    drill.emulator.add_faults(storm_script())
    env = drill.env(
        LLM_CALL_TRIES=TRIES,
        LLM_BACKOFF_BASE="0.2",
        LLM_BACKOFF_MAX="1",
        CELERY_TASK_TIME_LIMIT="60",  # no lease runs out during the storm
    )
    drill.procs.worker(env, concurrency=4)
    run = pipeline_start(dataset_slug=slug, params=PARAMS, provider="gemini")
    # no reconciler: the run must finish on its own
    job = wait_until(
        lambda: final_job(run.pk), 120.0, "job final in the storm", context=drill.context
    )

    tasks = list(SummaryTask.objects.filter(job=job).select_related("cluster", "summary"))
    calls = list(LLMCall.objects.filter(job=job).order_by("pk"))
    log = drill.emulator.request_log()

    # the storm was real: about half the answers were transient errors, the 400s were served
    transient = [e for e in log if e["status"] in (429, 503)]
    assert 0.3 <= len(transient) / len(log) <= 0.7, (len(transient), len(log))
    assert sum(e["status"] == 400 for e in log) == len(PERMANENT_AT)

    # every cluster ends succeeded or failed, with the reason
    assert job.status == JobStatus.SUCCEEDED, job.message
    assert len(tasks) >= GROUPS - 1
    assert job.succeeded + job.failed == job.total == len(tasks), job.progress_message
    by_task: dict[int | None, list[LLMCall]] = defaultdict(list)
    for call in calls:
        by_task[call.task_id].append(call)
    for task in tasks:
        assert task.state in (TaskState.SUCCEEDED, TaskState.FAILED), (task.pk, task.state)
        # API errors are not "fixed" by regenerating: one generation attempt per cluster
        assert task.attempts == 1, (task.pk, task.attempts, task.last_error)
        if task.state == TaskState.FAILED:  # only a permanent error ends a cluster failed
            last = [c for c in by_task[task.pk] if c.kind == "generate"][-1]
            assert last.error_class == "api_error HTTP 400", (task.pk, last.error_class)
            assert task.last_error.startswith("generation attempt 1: "), task.last_error
            assert last.error_message and last.error_message in task.last_error
            assert task.summary is None
        else:
            summary = task.summary
            assert summary is not None and summary.is_current
            judged = [c for c in by_task[task.pk] if c.kind == "judge"]
            if judged[-1].status != LLMCall.Status.SUCCESS:  # the judge never answered
                assert summary.validation_status == ValidationStatus.PENDING
                assert "judge could not be reached" in summary.judge_reasoning
                assert judged[-1].error_message in summary.judge_reasoning

    # the retry budget: a call is a run of tries numbered 1..n (a requeued cluster starts a new
    # run for the same attempt); per run at most TRIES tries failed other than by a 429; every
    # try but the last failed transiently; a permanent error is always the last try; a run
    # ending in a transient error used all its TRIES (and its cluster was requeued)
    runs: list[list[LLMCall]] = []
    current: dict[tuple[int | None, str, int], list[LLMCall]] = {}
    for call in calls:
        key = (call.task_id, call.kind, call.attempt)
        if call.try_number == 1 or key not in current:
            current[key] = []
            runs.append(current[key])
        current[key].append(call)
    for group in runs:
        key = (group[0].task_id, group[0].kind, group[0].attempt)
        numbers = [c.try_number for c in group]
        assert numbers == list(range(1, len(group) + 1)), (key, numbers)
        counted = [c for c in group if c.error_class != "api_error HTTP 429"]
        assert sum(c.status != LLMCall.Status.SUCCESS for c in counted) <= TRIES, (key, numbers)
        for earlier in group[:-1]:
            assert earlier.status == LLMCall.Status.API_ERROR, (key, earlier.error_class)
            assert earlier.error_class in ("api_error HTTP 429", "api_error HTTP 503"), (
                key,
                earlier.error_class,
            )
        last = group[-1]
        if last.status != LLMCall.Status.SUCCESS and last.error_class != "api_error HTTP 400":
            assert sum(c.error_class == "api_error HTTP 503" for c in group) == TRIES, key
    permanent = [c for c in calls if c.error_class == "api_error HTTP 400"]
    assert len(permanent) == len(PERMANENT_AT)
    assert all(any(g[-1] == c for g in runs) for c in permanent)
    assert any(len(g) > 1 and g[-1].status == LLMCall.Status.SUCCESS for g in runs), (
        "no call succeeded after a retry"
    )
    assert any(
        sum(c.error_class == "api_error HTTP 429" for c in g) > 0
        and g[-1].status == LLMCall.Status.SUCCESS
        for g in runs
    ), "no call waited through a 429"

    # the provider saw exactly the calls on record: no hidden or unbounded retries
    assert len(log) == len(calls), (len(log), len(calls))

    # waits: every retry after a hinted answer came at least the hint later
    by_call: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for entry in log:
        by_call[(entry["cluster"], entry["target"])].append(entry)
    hinted = 0
    for cluster_target, entries in by_call.items():
        assert cluster_target[0] is not None
        entries.sort(key=lambda e: e["monotonic"])
        for before, after in itertools.pairwise(entries):
            if before["status"] in (429, 503) and before["retry_hint"] is not None:
                hinted += 1
                gap = after["monotonic"] - (before["monotonic"] + before["duration"])
                assert gap >= before["retry_hint"] - TOLERANCE, (cluster_target, gap, before)
    assert hinted >= 3, "too few hinted retries to check the waits"
    clusters = {cluster_key(t.cluster.member_symbols) for t in tasks}
    assert {k[0] for k in by_call} <= clusters
    failed = sum(t.state == TaskState.FAILED for t in tasks)
    print(
        f"\nprovider storm: {len(log)} calls, {len(transient)} transient errors, "
        f"{len(permanent)} permanent; {len(tasks) - failed} clusters succeeded, {failed} failed; "
        f"{hinted} hinted retries waited as asked"
    )
