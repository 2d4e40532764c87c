"""A 429 is waiting, not failing; a transient failure after the last try goes back to the queue.

Real google-genai SDK over HTTP to the Gemini emulator; the pipeline tests run a real Celery
worker (threads, in this process) on Redis and PostgreSQL.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clustering.services import dataset_import
from llm.emulators.server import EmulatorServer
from llm.models import GenerationJob, JobStatus, LLMCall, SummaryTask, TaskState
from llm.providers.gemini import GeminiProvider
from llm.ratelimit import rate_note_for
from llm.services.calls import provider_call
from llm.services.pipeline import pipeline_start
from llm.services.requeue import REQUEUE_DEADLINE_MARGIN, requeue_countdown
from tests.conftest import planted_rows
from tests.llm.batch_helpers import app_on_emulator
from tests.llm.provider_helpers import CANARY_KEY, GEMINI, SummaryOut
from tests.support.waiting import wait_until

PARAMS = {"k": 5, "min_cluster_size": 5}


@pytest.fixture
def gemini(settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorServer]:
    """The app on a Gemini emulator: 5 s calls, 3 tries, a 120 s rate-limit budget."""
    with app_on_emulator(
        settings,
        monkeypatch,
        "gemini",
        timeout=5.0,
        batch=False,
        LLM_CALL_TRIES=3,
        LLM_RATE_LIMIT_BUDGET=120.0,
    ) as emulator:
        yield emulator


@pytest.fixture
def two_clusters(tmp_path: Path) -> str:
    rows = planted_rows(groups=2, size=12)
    path = tmp_path / "two.csv"
    path.write_text(
        "entity_id,symbol,term_id,term_name,category\n" + "\n".join(",".join(r) for r in rows)
    )
    dataset_import(path=path, slug="two-storm", kind="functional")
    return "two-storm"


def _run(dataset: str, timeout: float = 180.0) -> GenerationJob:
    run = pipeline_start(dataset_slug=dataset, params=PARAMS)

    def final() -> GenerationJob | None:
        job = GenerationJob.objects.filter(run=run).first()
        done = job is not None and job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED)
        return job if done else None

    return wait_until(final, timeout, f"the job of run {run.pk} finished")


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_429_storm_longer_than_the_tries_loses_nothing(
    celery_worker, gemini, two_clusters
) -> None:
    """Nine 429s in a row (three times LLM_CALL_TRIES) on the generate calls, well within the
    rate-limit budget: every cluster is summarised, and the 429s used no try."""
    gemini.add_fault("status", target="generate", code=429, retry_after=0.2, times=9)
    job = _run(two_clusters)
    assert job.status == JobStatus.SUCCEEDED
    assert (job.succeeded, job.failed) == (2, 0), job.message
    tasks = list(SummaryTask.objects.filter(job=job))
    assert all(t.state == TaskState.SUCCEEDED and t.attempts == 1 for t in tasks)
    assert all(t.deliveries == 1 for t in tasks)  # no requeue was needed either
    log = gemini.request_log("generate")
    assert sum(e["status"] == 429 for e in log) == 9
    assert sum(e["status"] == 200 for e in log) == 2
    limited = LLMCall.objects.filter(job=job, kind="generate", error_class__contains="429")
    assert limited.count() == 9
    # the learned rate is shown with the job's progress (the worker runs in this process)
    assert "learned from the provider's 429s" in rate_note_for(job.pk)
    # at least one call went on past LLM_CALL_TRIES on 429s alone and then succeeded
    last = LLMCall.objects.filter(job=job, kind="generate", status="success")
    assert max(c.try_number for c in last) > 3


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_transient_failure_after_the_last_try_is_requeued(
    celery_worker, gemini, settings, two_clusters
) -> None:
    """A 503 on the only try (LLM_CALL_TRIES = 1, so the two clusters in flight cannot share
    the faults) of one cluster's generate call: the cluster goes back to the queue with a delay
    instead of failing, and succeeds on its next delivery without losing a generation
    attempt."""
    settings.LLM_CALL_TRIES = 1
    gemini.add_fault("status", target="generate", code=503, times=1)
    job = _run(two_clusters)
    assert job.status == JobStatus.SUCCEEDED
    assert (job.succeeded, job.failed) == (2, 0), job.message
    tasks = sorted(SummaryTask.objects.filter(job=job), key=lambda t: t.deliveries)
    assert [t.deliveries for t in tasks] == [1, 2]
    requeued = tasks[1]
    assert requeued.state == TaskState.SUCCEEDED and requeued.attempts == 1
    calls = LLMCall.objects.filter(task=requeued, kind="generate").order_by("pk")
    assert [c.status for c in calls] == ["api_error", "success"]
    assert "503" in calls[0].error_class
    assert [e["status"] for e in gemini.request_log("generate")].count(503) == 1


# --- one call, no worker ------------------------------------------------------------------


@pytest.mark.django_db
def test_rate_limits_are_given_up_only_after_the_budget(settings, gemini) -> None:
    """Endless 429s with LLM_CALL_TRIES = 1: the call keeps trying (429s use no try) and gives
    up once LLM_RATE_LIMIT_BUDGET (2 s) has passed, saying so."""
    settings.LLM_RATE_LIMIT_BUDGET = 2.0
    settings.LLM_CALL_TRIES = 1
    gemini.add_fault("status", target="generate", code=429, retry_after=0.2, times=500)
    provider = GeminiProvider(api_key=CANARY_KEY, base_url=gemini.url, timeout=5)
    started = time.monotonic()
    outcome = provider_call(
        provider=provider,
        request=GEMINI.request(SummaryOut),
        kind=LLMCall.Kind.GENERATE,
        job=None,
        task=None,
        attempt=1,
    )
    elapsed = time.monotonic() - started
    assert outcome.error is not None and outcome.error.rate_limited and outcome.error.transient
    assert "rate limited for" in outcome.error.message
    assert elapsed >= 2.0
    assert elapsed < 60.0
    assert outcome.call.try_number > settings.LLM_CALL_TRIES
    assert all(e["status"] == 429 for e in gemini.request_log())


@pytest.mark.django_db
def test_permanent_errors_still_fail_at_once(settings, gemini) -> None:
    for code in (400, 401, 403, 404):
        gemini.reset()
        gemini.add_fault("status", target="generate", code=code, times=5)
        provider = GeminiProvider(api_key=CANARY_KEY, base_url=gemini.url, timeout=5)
        outcome = provider_call(
            provider=provider,
            request=GEMINI.request(SummaryOut),
            kind=LLMCall.Kind.GENERATE,
            job=None,
            task=None,
            attempt=1,
        )
        assert outcome.error is not None and not outcome.error.transient
        assert outcome.call.try_number == 1
        assert len(gemini.request_log()) == 1


def test_requeue_countdown_respects_the_deadline_and_eager_mode(settings) -> None:
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.LLM_BACKOFF_BASE = 1.0
    settings.LLM_BACKOFF_MAX = 60.0
    first = requeue_countdown(deliveries=1, retry_after=None, remaining=3600)
    assert first is not None and 1.0 <= first <= 3.0
    assert requeue_countdown(deliveries=30, retry_after=None, remaining=3600) == 60.0
    assert requeue_countdown(deliveries=1, retry_after=7.5, remaining=3600) == 7.5
    # not enough time left before the job's deadline: the task fails as before
    assert (
        requeue_countdown(deliveries=1, retry_after=7.5, remaining=REQUEUE_DEADLINE_MARGIN) is None
    )
    settings.CELERY_TASK_ALWAYS_EAGER = True
    assert requeue_countdown(deliveries=1, retry_after=None, remaining=3600) is None
