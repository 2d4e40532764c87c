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
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection

from clustering.services import dataset_import
from config.celery import app
from llm.models import (
    ClusterSummary,
    GenerationJob,
    JobStatus,
    LLMCall,
    SummaryTask,
    TaskState,
    ValidationStatus,
)
from llm.providers.emulators.gemini import GeminiEmulator
from llm.services.pipeline import pipeline_start
from tests.conftest import planted_rows

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
RATE_LIMIT = "6 per 2 seconds"
SERVER_RPM = 6
WINDOW_SECONDS = 2.0
SERVER_BURST = 2
MAX_429 = 3
GROUPS = 12
PARAMS = {"k": 5, "min_cluster_size": 5}
JOB_TIMEOUT = 180.0  # seconds
READY_TIMEOUT = 60.0  # seconds for both workers to answer a ping


def _test_database_url() -> str:
    """postgres://USER[:PASSWORD]@HOST:PORT/NAME of the database this test is using (the
    pytest-django test database, not the one DATABASE_URL names)."""
    conf = connection.settings_dict
    user = quote(conf["USER"] or "postgres", safe="")
    password = f":{quote(conf['PASSWORD'], safe='')}" if conf.get("PASSWORD") else ""
    host = conf["HOST"] or "127.0.0.1"
    port = conf["PORT"] or "5432"
    return f"postgres://{user}{password}@{host}:{port}/{conf['NAME']}"


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


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every worker (warm shutdown), then kill whichever is still alive after 15 s."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15.0
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


Workers = tuple[list[str], list[Path], Callable[[dict[str, str]], None]]


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    """Yields (worker names, log paths, start(env) function); stops the workers afterwards."""
    names = [f"ratelimit-w{i}-{os.getpid()}" for i in (1, 2)]
    logs = [tmp_path / f"{name}.log" for name in names]
    procs: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str]) -> None:
        for name, log in zip(names, logs, strict=True):
            with log.open("wb") as out:
                procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "celery",
                            "-A",
                            "config",
                            "worker",
                            "-Q",
                            "default,llm",
                            "--pool",
                            "solo",
                            "-c",
                            "1",
                            "--without-heartbeat",
                            "--without-gossip",
                            "--without-mingle",
                            "--loglevel",
                            "INFO",
                            "-n",
                            f"{name}@%h",
                        ],
                        cwd=ROOT,
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )

    try:
        yield names, logs, start
    finally:
        _stop(procs)


def _tails(logs: list[Path], lines: int = 30) -> str:
    parts = []
    for log in logs:
        text = log.read_text(errors="replace").splitlines() if log.exists() else []
        parts.append(f"--- {log.name} ---\n" + "\n".join(text[-lines:]))
    return "\n".join(parts)


def _full_name(replies: dict[str, Any], name: str) -> str | None:
    return next((key for key in replies if key.startswith(f"{name}@")), None)


def _wait_ready(names: list[str], logs: list[Path]) -> None:
    """Until every worker answers a broadcast ping (bounded by READY_TIMEOUT seconds)."""
    deadline = time.monotonic() + READY_TIMEOUT
    seen: set[str] = set()
    while time.monotonic() < deadline:
        for reply in app.control.ping(timeout=0.5) or []:
            seen.update(n for n in names if _full_name(reply, n))
        if seen == set(names):
            return
    raise AssertionError(f"workers not ready in {READY_TIMEOUT} s: {seen}\n{_tails(logs)}")


def _wait_job(run_id: int, logs: list[Path]) -> GenerationJob:
    deadline = time.monotonic() + JOB_TIMEOUT
    while time.monotonic() < deadline:
        job = GenerationJob.objects.filter(run_id=run_id).first()
        if job is not None and job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job of run {run_id} did not finish in {JOB_TIMEOUT} s\n{_tails(logs)}")


def _summarise_counts(names: list[str]) -> dict[str, int]:
    """``llm.summarise_cluster`` tasks each worker processed, from the workers' own stats."""
    replies = app.control.inspect(timeout=3.0).stats() or {}
    counts = {}
    for name in names:
        full = _full_name(replies, name)
        total = replies[full].get("total", {}) if full else {}
        counts[name] = int(total.get("llm.summarise_cluster", 0))
    return counts


def test_two_worker_processes_share_the_rate_limit(tmp_path: Path, workers: Workers) -> None:
    names, logs, start = workers
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
        start(
            _worker_env(
                emulator_url=emulator.url,
                database_url=_test_database_url(),
                redis_url=redis_url,
            )
        )
        _wait_ready(names, logs)
        run = pipeline_start(dataset_slug="twelve-groups", params=PARAMS, provider="gemini")
        job = _wait_job(run.pk, logs)
        per_worker = _summarise_counts(names)
        log = emulator.request_log()

    tasks = list(SummaryTask.objects.filter(job=job))
    assert job.status == JobStatus.SUCCEEDED, f"{job.message}\n{_tails(logs)}"
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
    assert all(n >= 1 for n in per_worker.values()), f"{per_worker}\n{_tails(logs)}"
    assert sum(per_worker.values()) >= len(tasks), per_worker
