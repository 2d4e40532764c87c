"""The shared rate holds across processes against a provider that enforces it as providers do.

Two separate Celery worker processes summarise one run against the Gemini emulator in bucket
mode: ``SERVER_RPM`` per ``WINDOW_SECONDS`` s refilled continuously (3 requests a second) with a
bucket of ``SERVER_BURST`` (2), answering 429 with RetryInfo beyond it, as real providers enforce
a per-minute limit at sub-second granularity. The product is configured at the same rate
(``LLM_RATE_LIMIT`` "6 per 2 seconds"), which its shared limiter paces at one call every
(2 s + 0.5 s margin) / 6 = 0.417 s across both processes.

What is asserted is what the provider saw (the emulator's own log), not how fast the test ran:
every cluster summarised; the emulator answered 429 to at most ``MAX_429`` requests (jitter on a
loaded machine may cost one or two; a moving window or a limiter per process gets far more:
one admitting a window's 6 calls at once is refused 4 of them every window, two unshared
pacers send 5.3 a second to a bucket refilled at 3); and the arrivals span at least the time
the server's rate needs for them (a lower bound: load only makes the run slower). The workers
are real ``celery worker`` subprocesses (solo pool, one each) on the suite's Redis and the
pytest-django test database; which worker ran what comes from the workers themselves
(``celery inspect stats``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from clustering.services import dataset_import
from config.celery import app
from llm.emulators.gemini import GeminiEmulator
from llm.models import (
    ClusterSummary,
    GenerationJob,
    JobStatus,
    LLMCall,
    SummaryTask,
    TaskState,
    ValidationStatus,
)
from llm.services.pipeline import pipeline_start
from tests.conftest import planted_rows
from tests.support.waiting import wait_until
from tests.support.workers import CeleryProcesses, subprocess_database_url

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

RATE_LIMIT = "6 per 2 seconds"
SERVER_RPM = 6
WINDOW_SECONDS = 2.0
SERVER_BURST = 2
MAX_429 = 3
GROUPS = 12
PARAMS = {"k": 5, "min_cluster_size": 5}
JOB_TIMEOUT = 180.0  # seconds


def _worker_env(*, emulator_url: str, database_url: str, redis_url: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_API_KEY", "LLM_MODEL", "LLM_JUDGE_MODEL")
    }
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        LLM_PROVIDER="gemini",
        GEMINI_API_KEY="test-key",
        LLM_BASE_URL=emulator_url,
        LLM_RATE_LIMIT=RATE_LIMIT,
        LLM_TIMEOUT="10",
        LLM_BACKOFF_BASE="0.05",
        BATCH_API_ENABLED="false",  # realtime calls, whatever BATCH_THRESHOLD says
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[CeleryProcesses]:
    """The launcher of this test's worker processes; stops them afterwards."""
    procs = CeleryProcesses(tmp_path, tag="ratelimit")
    try:
        yield procs
    finally:
        procs.stop()


def _full_name(replies: dict[str, Any], name: str) -> str | None:
    return next((key for key in replies if key.startswith(f"{name}@")), None)


def _wait_job(run_id: int, workers: CeleryProcesses) -> GenerationJob:
    def final() -> GenerationJob | None:
        job = GenerationJob.objects.filter(run_id=run_id).first()
        done = job is not None and job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED)
        return job if done else None

    return wait_until(
        final, JOB_TIMEOUT, f"job of run {run_id} finished", interval=0.2, context=workers.tails
    )


def _summarise_counts(names: list[str]) -> dict[str, int]:
    """``llm.summarise_cluster`` tasks each worker processed, from the workers' own stats."""
    replies = app.control.inspect(timeout=3.0).stats() or {}
    counts = {}
    for name in names:
        full = _full_name(replies, name)
        total = replies[full].get("total", {}) if full else {}
        counts[name] = int(total.get("llm.summarise_cluster", 0))
    return counts


def test_two_worker_processes_share_the_rate_limit(
    tmp_path: Path, workers: CeleryProcesses
) -> None:
    redis_url = settings.REDIS_URL
    assert redis_url, "REDIS_URL must be set: this test needs the real Redis broker"
    rows = planted_rows(groups=GROUPS, size=12)
    path = tmp_path / "groups.csv"
    path.write_text(
        "entity_id,symbol,term_id,term_name,category\n"
        + "\n".join(",".join(row) for row in rows)
        + "\n",
        encoding="utf-8",
    )
    dataset_import(path=path, slug="twelve-groups", kind="functional")

    with GeminiEmulator(
        latency=0.05,
        rpm=SERVER_RPM,
        window=WINDOW_SECONDS,
        rate_mode="bucket",
        burst=SERVER_BURST,
    ) as emulator:
        env = _worker_env(
            emulator_url=emulator.url,
            database_url=subprocess_database_url(),
            redis_url=redis_url,
        )
        # one process each, solo pool: two separate limiters that share only Redis
        started = [workers.worker(env, pool="solo", concurrency=1, wait=False) for _ in range(2)]
        workers.wait_ready(*started, app=app)
        names = [proc.name for proc in started]
        run = pipeline_start(dataset_slug="twelve-groups", params=PARAMS, provider="gemini")
        job = _wait_job(run.pk, workers)
        per_worker = _summarise_counts(names)
        log = emulator.request_log()

    tasks = list(SummaryTask.objects.filter(job=job))
    assert job.status == JobStatus.SUCCEEDED, f"{job.message}\n{workers.tails()}"
    assert len(tasks) >= GROUPS - 1, f"expected about {GROUPS} clusters, got {len(tasks)}"

    # every cluster ended with a usable summary: validated, or pending human review
    assert all(t.state == TaskState.SUCCEEDED for t in tasks), [
        (t.pk, t.state, t.last_error) for t in tasks if t.state != TaskState.SUCCEEDED
    ]
    statuses = set(
        ClusterSummary.objects.filter(tasks__job=job).values_list("validation_status", flat=True)
    )
    assert statuses <= {ValidationStatus.VALIDATED, ValidationStatus.PENDING}, statuses
    assert job.succeeded == len(tasks)

    # the emulator saw every recorded call, well over the limit in total
    accepted = [e for e in log if e["status"] == 200]
    refused = [e for e in log if e["status"] == 429]
    assert len(accepted) >= 2 * len(tasks) >= 4 * SERVER_RPM
    assert len(accepted) + len(refused) == len(log), [e for e in log if e not in accepted]
    assert LLMCall.objects.filter(job=job).count() == len(log)

    # what the provider saw: (almost) no refusals ...
    first = log[0]["monotonic"]
    assert len(refused) <= MAX_429, (
        f"{len(refused)} of {len(log)} requests answered 429; arrivals: "
        f"{[(round(e['monotonic'] - first, 3), e['status']) for e in log]}"
    )
    # ... and arrivals no faster than the server's rate allows (its bucket starts full)
    span = log[-1]["monotonic"] - first
    refill = SERVER_RPM / WINDOW_SECONDS
    assert span >= (len(log) - SERVER_BURST) / refill - 0.5, span

    # both processes did real work: each summarised clusters, together all of them
    assert all(n >= 1 for n in per_worker.values()), f"{per_worker}\n{workers.tails()}"
    assert sum(per_worker.values()) >= len(tasks), per_worker
