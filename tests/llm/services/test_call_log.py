"""The call row lifecycle (started before the request, completed after), calls of unknown
outcome (marked by the reconciler and at finalize, counted in the job's totals, the API and the
admin), and the statements one summarised cluster costs (pinned, so they cannot regress)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from clustering.services import clustering_run_create, clustering_run_execute
from llm.admin.jobs import GenerationJobAdmin
from llm.models import GenerationJob, JobStatus, LLMCall, SummaryTask, TaskState
from llm.providers.extractive import ExtractiveProvider
from llm.services.call_log import DEAD_MARGIN_SECONDS, calls_mark_unknown
from llm.services.generation import job_plan, summary_task_execute, summary_tasks_load
from llm.services.reconcile import reconcile
from llm.services.steps import job_finalize
from tests.support.planted_runs import PARAMS, import_planted
from tests.support.world import client_for, make_user

pytestmark = pytest.mark.django_db

#: SQL statements of one summarised cluster (accepted at the first attempt) of a chunk: the
#: claim (one UPDATE of the task row, locked FOR UPDATE in its own subquery, that counts the
#: first attempt and returns the row), per call a started INSERT that is also the cancellation
#: check (no provider call starts after a cancel) and a completing UPDATE (x2), the draft, and
#: in one transaction the current-summary lock, the usage aggregate, the summary and its event
#: and the task's finish. Per chunk (``llm.summarise_clusters``, or a lone task): the tasks
#: with job, cluster, run and dataset, and the clusters' terms. Progress (an aggregate and an
#: update) is written at most once a second.
#: Before: 15 per cluster (claim SELECT and UPDATE, terms, a cancellation query before each
#: call); before that 12 in 8 commits, with one INSERT per call written after the call.
STATEMENTS_PER_CLUSTER = 11
STATEMENTS_PER_CHUNK = 2
PROGRESS_STATEMENTS = 2


def _planned(planted_csv: Path) -> tuple[GenerationJob, list[int]]:
    slug = import_planted(planted_csv)
    run = clustering_run_create(dataset_slug=slug, params=PARAMS)
    clustering_run_execute(run_id=run.pk)
    ids = job_plan(run_id=run.pk)
    assert len(ids) == 3
    return GenerationJob.objects.get(run=run), ids


def test_a_chunk_of_summarised_clusters_costs_eleven_statements_a_cluster(
    planted_csv: Path,
) -> None:
    _, ids = _planned(planted_csv)
    summary_task_execute(task_id=ids[0])  # per-process caches (dataset symbols, provider)
    chunk = ids[1:]
    with CaptureQueriesContext(connection) as queries:
        loaded = summary_tasks_load(task_ids=chunk)
        for task_id in chunk:
            assert summary_task_execute(task_id=task_id, loaded=loaded[task_id]) == (
                TaskState.SUCCEEDED
            )
    # in a test the atomic blocks are savepoints of the test's transaction: one SAVEPOINT per
    # transaction (COMMIT in production, where Django logs neither BEGIN nor COMMIT)
    every = [q["sql"] for q in queries.captured_queries]
    transactions = sum(1 for s in every if s.startswith("SAVEPOINT"))
    sqls = [s for s in every if not s.startswith(("SAVEPOINT", "RELEASE SAVEPOINT"))]
    for task_id in chunk:
        task = SummaryTask.objects.get(pk=task_id)
        assert task.attempts == 1 and task.calls.count() == 2  # generate + judge, accepted
    progress = sum(1 for s in sqls if s.startswith('UPDATE "llm_generationjob"'))
    expected = STATEMENTS_PER_CHUNK + len(chunk) * STATEMENTS_PER_CLUSTER
    assert len(sqls) == expected + PROGRESS_STATEMENTS * progress, sqls
    assert sum(1 for s in sqls if s.startswith('INSERT INTO "llm_llmcall"')) == 2 * len(chunk)
    assert sum(1 for s in sqls if s.startswith('UPDATE "llm_llmcall"')) == 2 * len(chunk)
    # one explicit transaction per cluster (the summary with the task's finish); the other
    # writes (the claim, started and completed rows of both calls, the draft) are single
    # autocommitted statements
    assert transactions == len(chunk), every
    claims = [s for s in sqls if "FOR UPDATE" in s and '"llm_summarytask"' in s]
    assert len(claims) == len(chunk)
    for claim in claims:
        # the claim locks the task row only, not the job row it reads
        locking = claim[: claim.index("FOR UPDATE")]
        assert locking.startswith('WITH old AS (SELECT id, attempts FROM "llm_summarytask" WHERE')
        assert "JOIN" not in locking and "llm_generationjob" not in locking, claim


def test_a_lone_cluster_costs_the_chunk_statements_once(planted_csv: Path) -> None:
    _, ids = _planned(planted_csv)
    summary_task_execute(task_id=ids[0])  # per-process caches (dataset symbols, provider)
    with CaptureQueriesContext(connection) as queries:
        assert summary_task_execute(task_id=ids[1]) == TaskState.SUCCEEDED
    sqls = [
        q["sql"]
        for q in queries.captured_queries
        if not q["sql"].startswith(("SAVEPOINT", "RELEASE SAVEPOINT"))
    ]
    progress = sum(1 for s in sqls if s.startswith('UPDATE "llm_generationjob"'))
    expected = STATEMENTS_PER_CHUNK + STATEMENTS_PER_CLUSTER + PROGRESS_STATEMENTS * progress
    assert len(sqls) == expected, sqls


@pytest.mark.django_db(transaction=True)  # so that "no open transaction" means committed
def test_the_call_row_is_committed_started_before_the_request(
    planted_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, ids = _planned(planted_csv)
    seen: list[tuple[str, Decimal, bool]] = []
    real = ExtractiveProvider.generate

    def generate(self: ExtractiveProvider, request: Any) -> Any:
        row = LLMCall.objects.filter(task_id=ids[0]).order_by("-pk").first()
        assert row is not None
        seen.append((row.status, row.projected_cost_usd, connection.in_atomic_block))
        return real(self, request)

    monkeypatch.setattr(ExtractiveProvider, "generate", generate)
    assert summary_task_execute(task_id=ids[0]) == TaskState.SUCCEEDED
    assert [s[0] for s in seen] == [LLMCall.Status.STARTED] * 2
    assert not any(s[2] for s in seen)  # committed: no transaction is open during the call
    assert set(LLMCall.objects.filter(task_id=ids[0]).values_list("status", flat=True)) == {
        LLMCall.Status.SUCCESS
    }
    # the attempt was counted before the call too (the claim's own UPDATE)
    assert SummaryTask.objects.get(pk=ids[0]).attempts == 1


def test_a_cancel_during_the_generation_starts_no_judge_call(
    planted_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the cancellation check rides on the started row's INSERT: nothing is written and no
    # request leaves for the judge call once the job is cancelled
    job, ids = _planned(planted_csv)
    requests: list[str] = []
    real = ExtractiveProvider.generate

    def generate(self: ExtractiveProvider, request: Any) -> Any:
        requests.append(request.custom_id)
        GenerationJob.objects.filter(pk=job.pk).update(status=JobStatus.CANCELLED)
        return real(self, request)

    monkeypatch.setattr(ExtractiveProvider, "generate", generate)
    assert summary_task_execute(task_id=ids[0]) == TaskState.SKIPPED
    task = SummaryTask.objects.get(pk=ids[0])
    assert task.last_error == "job cancelled" and task.attempts == 1
    assert [r.rsplit("-", 1)[1] for r in requests] == ["g1"]
    assert list(task.calls.values_list("kind", "status")) == [
        (LLMCall.Kind.GENERATE, LLMCall.Status.SUCCESS)
    ]


def _started(job: GenerationJob, task_id: int, *, age: float, projected: str) -> LLMCall:
    call = LLMCall.objects.create(
        job=job,
        task_id=task_id,
        kind=LLMCall.Kind.GENERATE,
        provider="gemini",
        model="gemini-2.5-flash",
        status=LLMCall.Status.STARTED,
        projected_cost_usd=Decimal(projected),
    )
    LLMCall.objects.filter(pk=call.pk).update(created_at=timezone.now() - timedelta(seconds=age))
    return call


def test_reconciler_marks_dead_calls_unknown_and_leaves_live_ones(
    planted_csv: Path, settings
) -> None:
    settings.LLM_TIMEOUT = 10
    settings.LLM_JOB_TIME_LIMIT = 100
    job, ids = _planned(planted_csv)
    now = timezone.now()
    live_lease = now + timedelta(seconds=600)
    SummaryTask.objects.filter(pk__in=ids).update(state=TaskState.RUNNING, lease_until=live_lease)
    SummaryTask.objects.filter(pk=ids[1]).update(lease_until=now - timedelta(seconds=1))
    live = _started(job, ids[0], age=5, projected="0.010000")  # in flight, worker alive
    too_old = _started(job, ids[0], age=110 + DEAD_MARGIN_SECONDS + 5, projected="0.020000")
    lease_gone = _started(job, ids[1], age=1, projected="0.040000")  # its worker is gone
    done = LLMCall.objects.create(
        job=job,
        task_id=ids[2],
        kind=LLMCall.Kind.JUDGE,
        provider="gemini",
        model="gemini-2.5-flash",
        status=LLMCall.Status.SUCCESS,
        cost_usd=Decimal("0.001000"),
        projected_cost_usd=Decimal("0.500000"),
    )

    counts = reconcile()

    assert counts["calls_unknown"] == 2
    statuses = dict(LLMCall.objects.values_list("pk", "status"))
    assert statuses[live.pk] == LLMCall.Status.STARTED
    assert statuses[too_old.pk] == statuses[lease_gone.pk] == LLMCall.Status.UNKNOWN
    assert statuses[done.pk] == LLMCall.Status.SUCCESS
    marked = LLMCall.objects.get(pk=lease_gone.pk)
    assert marked.cost_usd == Decimal("0.040000")  # its projected cost
    assert marked.error_class == "unknown_outcome"
    assert LLMCall.objects.get(pk=done.pk).cost_usd == Decimal("0.001000")  # untouched
    job.refresh_from_db()
    assert job.unknown_calls == 2
    assert job.unknown_cost_usd == Decimal("0.060000")
    assert job.cost_usd == Decimal("0.061000")  # known cost plus the marked projection
    # a second pass has nothing left to mark
    assert reconcile()["calls_unknown"] == 0


def test_finalize_marks_started_rows_of_a_finished_job(planted_csv: Path) -> None:
    job, ids = _planned(planted_csv)
    for task_id in ids:
        assert summary_task_execute(task_id=task_id) == TaskState.SUCCEEDED
    # a delivery killed in flight before the one that finished the task
    dead = _started(job, ids[0], age=1, projected="0.003000")
    known = sum(LLMCall.objects.exclude(pk=dead.pk).values_list("cost_usd", flat=True))
    assert job_finalize(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    assert LLMCall.objects.get(pk=dead.pk).status == LLMCall.Status.UNKNOWN
    assert (job.unknown_calls, job.unknown_cost_usd) == (1, Decimal("0.003000"))
    assert job.cost_usd == known + Decimal("0.003000")
    assert calls_mark_unknown() == (0, [])

    body = client_for(make_user("plain")).get(f"/api/jobs/{job.pk}/").json()
    assert body["unknown_outcome"] == {"calls": 1, "projected_cost_usd": "0.003000"}
    assert Decimal(body["cost_usd"]) == job.cost_usd
    staff = client_for(make_user("staff"))
    rows = staff.get(f"/api/calls/?job={job.pk}&status=unknown").json()["results"]
    assert [(r["id"], r["cost_usd"], r["projected_cost_usd"]) for r in rows] == [
        (dead.pk, "0.003000", "0.003000")
    ]
    shown = GenerationJobAdmin(GenerationJob, admin_site=None).unknown_outcome(job)  # type: ignore[arg-type]
    assert shown == "1 call(s), $0.003000 projected (in cost)"
