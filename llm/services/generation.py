"""Realtime mode of the summary pipeline: plan a job, claim and summarise one cluster.

Chain (llm/tasks.py): cluster run -> plan -> chord(summarise one cluster per miss) -> finalize
(:func:`llm.services.steps.job_finalize`). The steps this driver shares with batch mode
(requests, recording outcomes, storing the summary, finishing a task) are in
:mod:`llm.services.steps`. ``SummaryTask`` rows are the source of truth; every step is idempotent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import OuterRef, QuerySet, Subquery
from django.utils import timezone

from clustering.models import Cluster, ClusteringRun, RunStatus
from llm.models import (
    TERMINAL_STATES,
    ClusterSummary,
    GenerationJob,
    JobStatus,
    LLMCall,
    SummaryTask,
    TaskState,
)
from llm.providers.registry import (
    ProviderNotConfigured,
    default_judge_model,
    default_model,
    provider_check,
    provider_get,
)
from llm.services.cache import (
    cache_join_sql,
    cache_message,
    cache_winners,
    current_summaries,
)
from llm.services.calls import JobCancelled, provider_call
from llm.services.context import cluster_context_build, context_terms_prefetch
from llm.services.insert_select import column_cast, insert_select_parts
from llm.services.requeue import TaskRequeued, task_requeue
from llm.services.steps import (
    NEXT_GENERATE,
    NEXT_JUDGE,
    RETRY_BY_REGENERATING,
    attempts_exhausted,
    draft_summary,
    generation_request,
    judge_request,
    on_generation,
    on_judgement,
    task_finish,
)

logger = logging.getLogger(__name__)

# --- plan -------------------------------------------------------------------------------------


def job_plan(
    *,
    run_id: int,
    provider: str | None = None,
    model: str | None = None,
    judge_model: str | None = None,
    force: bool | None = None,
) -> list[int]:
    """Create (or find) the run's ``GenerationJob`` and its ``SummaryTask`` rows, resolve cache
    hits with one bulk lookup, and return the ids of the tasks that need a provider.

    The job's provider, models and force come from the run's stored intent
    (``ClusteringRun.intent``, written by ``pipeline_start``); the arguments only fill in what a
    run without an intent lacks, then the settings (``LLM_PROVIDER``, ``LLM_MODEL``, ...).
    Cache hits (same composition hash and cluster type) are marked skipped; with ``force`` every
    cluster is regenerated except summaries whose status a human set (never overwritten). A
    provider that cannot be called (no key) marks every miss skipped with one clear message.
    A cancelled run or job plans nothing. Idempotent: planning the same run again returns the
    tasks still pending.
    """
    run = ClusteringRun.objects.select_related("dataset").get(pk=run_id)
    intent = dict(run.intent or {})
    name = intent.get("provider") or provider or settings.LLM_PROVIDER
    chosen_model = intent.get("model") or model or default_model(name)
    job, created = GenerationJob.objects.get_or_create(
        run=run,
        scope=GenerationJob.Scope.RUN,
        defaults={
            "provider": name,
            "model": chosen_model,
            "judge_model": intent.get("judge_model")
            or judge_model
            or model
            or default_judge_model(name),
            "force": bool(intent.get("force", force)),
        },
    )
    if not created and job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED):
        return []
    if run.status != RunStatus.SUCCEEDED:
        cancelled = run.status == RunStatus.CANCELLED
        reason = run.error.splitlines()[0] if run.error else run.status
        GenerationJob.objects.filter(pk=job.pk).update(
            status=JobStatus.CANCELLED if cancelled else JobStatus.FAILED,
            message="cancelled"
            if cancelled
            else f"clustering run {run.pk} did not succeed: {reason}",
            finished_at=timezone.now(),
        )
        return []
    return _plan_tasks(job, Cluster.objects.filter(run=run))


def job_start(*, job_id: int) -> list[int]:
    """Start a job whose tasks were created by the caller (e.g. a curator's regeneration):
    same cache and provider rules as :func:`job_plan`; returns the ids of tasks to run."""
    job = GenerationJob.objects.select_related("run").get(pk=job_id)
    if job.status != JobStatus.PENDING:
        return []
    return _plan_tasks(job, Cluster.objects.filter(summarytask__job=job))


def _plan_tasks(job: GenerationJob, clusters: QuerySet[Cluster]) -> list[int]:
    """Create the job's tasks for ``clusters``, resolve cache hits, return the misses' ids.

    Set-based, so a warm rerun costs the same few statements at 10 or 10,000 clusters: one
    ``INSERT ... SELECT`` writing each new task already marked when its composition is cached
    (the cache lookup is that statement's join), an ``UPDATE`` marking the hits among tasks that
    existed before (only when some did), one read of the misses' ids; no model instance, member
    list or id list passes through Python.
    """
    run = job.run
    now = timezone.now()
    with transaction.atomic():
        inserted = _tasks_insert(job, clusters, now)  # new tasks come in marked when a hit
        total = SummaryTask.objects.filter(job=job).count()
        GenerationJob.objects.filter(pk=job.pk, status=JobStatus.PENDING).update(
            status=JobStatus.RUNNING,
            started_at=now,
            deadline=now + timedelta(seconds=settings.LLM_JOB_TIME_LIMIT),
            total=total,
        )
        current = current_summaries(cluster_type=run.cluster_type)
        hits = cache_winners(current, force=job.force)
        reason = cache_message(force=job.force)
        cached_summary = Subquery(
            current.filter(
                composition_hash=Subquery(
                    Cluster.objects.filter(pk=OuterRef(OuterRef("cluster_id"))).values(
                        "composition_hash"
                    )[:1]
                ),
            ).values("pk")[:1]
        )
        pending = SummaryTask.objects.filter(job=job, state=TaskState.PENDING)
        if inserted < total:  # tasks that existed before (a replan, a regeneration)
            pending.filter(cluster__composition_hash__in=hits.values("composition_hash")).update(
                state=TaskState.SKIPPED,
                summary_id=cached_summary,
                last_error=reason,
                finished_at=now,
                updated_at=now,
            )
        misses = list(pending.values_list("pk", flat=True))
        try:
            provider_check(job.provider)
        except ProviderNotConfigured as exc:
            SummaryTask.objects.filter(pk__in=misses).update(
                state=TaskState.SKIPPED, last_error=str(exc), finished_at=now
            )
            GenerationJob.objects.filter(pk=job.pk).update(message=str(exc))
            return []
    return misses


def _tasks_insert(job: GenerationJob, clusters: QuerySet[Cluster], now: Any) -> int:
    """One ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``: a task of ``job`` for each of
    ``clusters`` that has none, written in its final state when the cache has the cluster's
    composition (skipped, linked to the summary; with ``force`` only a curator-locked one), so a
    warm rerun writes each task once instead of inserting and then updating it.

    ``bulk_create(ignore_conflicts=True)`` did this with one model instance and 16 bound values
    per cluster; here every column without a rule below gets its model default, so a column
    added to ``SummaryTask`` later is filled the way ``bulk_create`` would fill it. Returns the
    number of tasks inserted.
    """
    quote = connection.ops.quote_name
    reason = cache_message(force=job.force)
    hit = "s.id IS NOT NULL"
    finished_cast = column_cast(SummaryTask, "finished_at")
    rules: dict[str, tuple[str, list[Any]]] = {
        "job": ("%s", [job.pk]),
        "cluster": ("c.id", []),
        "state": (f"CASE WHEN {hit} THEN %s ELSE %s END", [TaskState.SKIPPED, TaskState.PENDING]),
        "summary": ("s.id", []),
        "last_error": (f"CASE WHEN {hit} THEN %s ELSE '' END", [reason]),
        "finished_at": (f"CASE WHEN {hit} THEN CAST(%s AS {finished_cast}) END", [now]),
    }

    def value_of(field: Any) -> Any:
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            return now
        return field.get_default()

    columns, values, params = insert_select_parts(SummaryTask, value_of=value_of, rules=rules)
    ids_sql, ids_params = clusters.values("pk").query.sql_with_params()
    # at most one current summary per (composition, type): the unique partial index
    winners = cache_join_sql("s", force=job.force)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {quote(SummaryTask._meta.db_table)} ({columns}) "
            f"SELECT {values} FROM {quote(Cluster._meta.db_table)} c "
            f"LEFT JOIN {quote(ClusterSummary._meta.db_table)} s "
            f"ON s.composition_hash = c.composition_hash AND s.cluster_type = %s "
            f"AND {winners} "
            f"WHERE c.id IN ({ids_sql}) "
            f"ON CONFLICT (job_id, cluster_id) DO NOTHING",
            [*params, job.run.cluster_type, *ids_params],
        )
        return int(cursor.rowcount)


# --- one cluster --------------------------------------------------------------------------------


#: Run columns no summary step reads: a real run's ``unclustered`` list alone holds thousands
#: of entities, and it was loaded, decoded and thrown away for every cluster.
_CLAIM_DEFERRED = (
    "cluster__run__params",
    "cluster__run__library_versions",
    "cluster__run__unclustered",
    "cluster__run__timings",
    "cluster__run__quality",
    "cluster__run__evidence_method",
    "cluster__run__error",
    "cluster__quality",
)


def summary_tasks_load(*, task_ids: Sequence[int]) -> dict[int, SummaryTask]:
    """The tasks by id with everything summarising them reads: job, cluster, run and dataset in
    one query (run columns no step reads deferred), the clusters' terms in a second one.

    A snapshot taken without a lock, for a chunk of a chord header to load its tasks at once:
    the claim (:func:`summary_task_execute`) rereads every column of the task row itself and
    the job's status, so what may change meanwhile is never taken from here.
    """
    return (
        SummaryTask.objects.select_related(
            "job", "cluster", "cluster__run", "cluster__run__dataset"
        )
        .defer(*_CLAIM_DEFERRED)
        .prefetch_related(context_terms_prefetch("cluster__terms"))
        .in_bulk(list(task_ids))
    )


def _claim(task_id: int, loaded: SummaryTask | None) -> SummaryTask | None:
    """Take the task unless it is finished or another worker holds a live lease: one statement.

    The task row alone is locked (``FOR UPDATE`` of a subquery on the task table: not the job
    row every worker of the job shares); the same statement counts the first generation attempt
    when nothing can stop it before the call (see _execute) and returns the row as claimed.
    """
    if loaded is None:
        loaded = summary_tasks_load(task_ids=[task_id]).get(task_id)
        if loaded is None:
            return None
    now = timezone.now()
    lease = now + timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT)
    if connection.vendor != "postgresql":
        # the embedded default (SQLite, eager Celery, one process): no row locks to take, and
        # SQLite has neither FOR UPDATE nor RETURNING t.*; keep this path, `make demo` runs it
        return _claim_portable(task_id, loaded, now=now, lease=lease)
    quote = connection.ops.quote_name
    table = quote(SummaryTask._meta.db_table)
    terminal = ", ".join(["%s"] * len(TERMINAL_STATES))
    claimed = list(
        SummaryTask.objects.raw(
            f"WITH old AS (SELECT id, attempts FROM {table} WHERE id = %s FOR UPDATE) "
            f"UPDATE {table} t SET state = %s, lease_until = %s, deliveries = t.deliveries + 1, "
            "started_at = COALESCE(t.started_at, %s), updated_at = %s, "
            "attempts = t.attempts + CASE WHEN j.status <> %s "
            "AND (j.deadline IS NULL OR j.deadline > %s) "
            "AND NOT (t.phase = %s AND t.draft IS NOT NULL "
            "AND t.draft NOT IN ('null'::jsonb, '{}'::jsonb)) "
            "AND t.attempts < %s THEN 1 ELSE 0 END "
            f"FROM old, {quote(GenerationJob._meta.db_table)} j "
            f"WHERE t.id = old.id AND j.id = t.job_id AND t.state NOT IN ({terminal}) "
            "AND NOT (t.state = %s AND t.lease_until IS NOT NULL AND t.lease_until > %s) "
            "RETURNING t.*, t.attempts - old.attempts AS counted, j.status AS job_status",
            [
                task_id,
                TaskState.RUNNING,
                lease,
                now,
                now,
                JobStatus.CANCELLED,
                now,
                NEXT_JUDGE,
                settings.LLM_MAX_ATTEMPTS,
                *TERMINAL_STATES,
                TaskState.RUNNING,
                now,
            ],
        )
    )
    if not claimed:
        return None
    task = claimed[0]
    task.job = loaded.job
    task.job.status = task.job_status  # type: ignore[attr-defined]
    task.cluster = loaded.cluster
    task.attempt_counted = bool(task.counted)  # type: ignore[attr-defined]
    return task


def _claim_portable(
    task_id: int, loaded: SummaryTask, *, now: Any, lease: Any
) -> SummaryTask | None:
    """:func:`_claim` in plain ORM statements for databases other than PostgreSQL (the
    embedded SQLite default): the same rules, read and written in one transaction."""
    with transaction.atomic():
        task = SummaryTask.objects.select_for_update().filter(pk=task_id).first()
        if task is None or task.state in TERMINAL_STATES:
            return None
        if task.state == TaskState.RUNNING and task.lease_until and task.lease_until > now:
            return None
        job = GenerationJob.objects.only("status", "deadline").get(pk=task.job_id)
        task.state = TaskState.RUNNING
        task.lease_until = lease
        task.deliveries += 1
        task.started_at = task.started_at or now
        fields = ["state", "lease_until", "deliveries", "started_at", "updated_at"]
        task.attempt_counted = (  # type: ignore[attr-defined]
            job.status != JobStatus.CANCELLED
            and (job.deadline is None or job.deadline > now)
            and not (task.phase == NEXT_JUDGE and task.draft)
            and task.attempts < settings.LLM_MAX_ATTEMPTS
        )
        if task.attempt_counted:  # type: ignore[attr-defined]
            task.attempts += 1
            fields.append("attempts")
        task.save(update_fields=fields)
    task.job = loaded.job
    task.job.status = job.status
    task.cluster = loaded.cluster
    return task


def summary_task_execute(*, task_id: int, loaded: SummaryTask | None = None) -> str | None:
    """Summarise one cluster: generate -> entity validation -> judge, regenerating with the
    judge's reasoning and the validation failures up to ``LLM_MAX_ATTEMPTS`` times.

    Outcomes (the task's final state): succeeded (a summary stored as validated after accept, or
    pending after low_confidence or a failed judge call), rejected (still rejected after the last
    attempt; stored with the reasoning), failed (no valid output; the reason is in last_error),
    skipped (the cache was filled meanwhile, or a curator's status is kept). Never raises for
    provider failures: a failed cluster must not stop the run.

    ``loaded``: the task as :func:`summary_tasks_load` read it (a chunk loads its tasks at
    once); loaded here when not given. Returns the final state, or None when another delivery
    owns or finished the task.
    """
    task = _claim(task_id, loaded)
    if task is None:
        return None
    try:
        return _execute(task)
    except TaskRequeued:
        raise
    except Exception as exc:  # record, never lose the cluster
        logger.exception("summary task %s crashed", task_id)
        task_finish(
            task=task, state=TaskState.FAILED, error=f"internal error: {type(exc).__name__}: {exc}"
        )
        return TaskState.FAILED


def _execute(task: SummaryTask) -> str:
    job = task.job
    if job.status == JobStatus.CANCELLED:
        return _cancelled(task)
    remaining = (job.deadline - timezone.now()).total_seconds() if job.deadline else 3600.0
    if remaining <= 0:
        task_finish(
            task=task, state=TaskState.FAILED, error="job time limit (LLM_JOB_TIME_LIMIT) exceeded"
        )
        return TaskState.FAILED
    deadline = time.monotonic() + remaining
    try:
        provider = provider_get(job.provider)
    except ProviderNotConfigured as exc:
        task_finish(task=task, state=TaskState.SKIPPED, error=str(exc))
        return TaskState.SKIPPED
    ctx = cluster_context_build(cluster=task.cluster)
    # a task handed over from batch mode may already hold a draft awaiting the judge
    step = NEXT_JUDGE if task.phase == NEXT_JUDGE and task.draft else NEXT_GENERATE
    # no new provider call after a cancel: every call's started-row INSERT checks the job
    # (stop_if_cancelled), so the check costs no statement of its own
    while step in (NEXT_GENERATE, NEXT_JUDGE):
        if step == NEXT_GENERATE:
            count_attempt = None
            if getattr(task, "attempt_counted", False):
                task.attempt_counted = False  # type: ignore[attr-defined]  # by the claim
            else:
                if task.attempts >= settings.LLM_MAX_ATTEMPTS:
                    if _job_cancelled(job.pk):  # a cancel stops the last store too
                        return _cancelled(task)
                    return attempts_exhausted(task=task, ctx=ctx)
                task.attempts += 1
                count_attempt = _attempt_writer(task.pk, task.attempts)
            try:
                outcome = provider_call(
                    provider=provider,
                    request=generation_request(job=job, task=task, ctx=ctx),
                    kind=LLMCall.Kind.GENERATE,
                    job=job,
                    task=task,
                    attempt=task.attempts,
                    deadline=deadline,
                    on_start=count_attempt,  # in the started call row's transaction
                    stop_if_cancelled=True,
                )
            except JobCancelled:
                if count_attempt is not None:  # rolled back with the started row
                    task.attempts -= 1
                return _cancelled(task)
            if outcome.error is not None and outcome.error.kind not in RETRY_BY_REGENERATING:
                error = f"generation attempt {task.attempts}: {outcome.call.error_message}"
                if outcome.error.transient:
                    task_requeue(task, job, outcome.error, error)  # raises TaskRequeued
                task_finish(task=task, state=TaskState.FAILED, error=error)
                return TaskState.FAILED
            step = on_generation(
                task=task,
                ctx=ctx,
                parsed=outcome.result.parsed if outcome.result is not None else None,
                error_message=outcome.call.error_message,
                error_kind=outcome.error.kind if outcome.error is not None else "",
                call=outcome.call,
            )
        else:
            summary = draft_summary(task=task, ctx=ctx)
            try:
                outcome = provider_call(
                    provider=provider,
                    request=judge_request(job=job, task=task, ctx=ctx, summary=summary),
                    kind=LLMCall.Kind.JUDGE,
                    job=job,
                    task=task,
                    attempt=task.attempts,
                    deadline=deadline,
                    stop_if_cancelled=True,
                )
            except JobCancelled:
                return _cancelled(task)
            step = on_judgement(
                task=task,
                ctx=ctx,
                verdict=outcome.result.parsed if outcome.result is not None else None,
                error_message=outcome.call.error_message or "judge call failed",
            )
    return step


def _cancelled(task: SummaryTask) -> str:
    task_finish(task=task, state=TaskState.SKIPPED, error="job cancelled")
    return TaskState.SKIPPED


def _job_cancelled(job_id: int) -> bool:
    """Whether the job was cancelled (``pipeline_cancel``) since the task was claimed."""
    return GenerationJob.objects.filter(pk=job_id, status=JobStatus.CANCELLED).exists()


def _attempt_writer(task_id: int, attempts: int) -> Any:
    """The write that counts a generation attempt on its task, for ``provider_call(on_start=)``
    (committed with the started call row, before the request leaves)."""

    def write() -> None:
        SummaryTask.objects.filter(pk=task_id).update(attempts=attempts)

    return write
