"""The reconciler: re-drive work that stalled (lost message, killed worker, broker restart), so no
run is left half done. Beat runs it every minute as ``llm.reconcile`` (registered by
:func:`reconcile_schedule_ensure`, called after ``migrate`` and by ``setup_maintenance``).

The database is the source of truth and every step is idempotent, so re-sending a message is
always safe; the reconciler only decides *when* a row has stalled and *how often* to try:

(a) ``ClusteringRun`` pending or running with no sign of life (``heartbeat_at``, which the
    computing worker renews every few seconds, else ``started_at``, else ``created_at``) for
    ``RECONCILE_STALL_SECONDS``: the pipeline chain is sent again (cluster is idempotent, plan is
    idempotent). A clustering that is still computing renews its heartbeat, so it is never
    re-driven however long it takes. The chain carries the run id only: provider, models and
    force are the run's stored intent (``ClusteringRun.intent``), read back by the plan step.
(b) ``SummaryTask`` on the realtime path of a running job (every task of a realtime job, and
    the tasks a batch-mode job handed to the realtime path after their batch item failed, expired
    or went missing), pending with no update for the threshold (its message was lost), or running
    with an expired ``lease_until`` (its worker died; the lease is ``CELERY_TASK_TIME_LIMIT``):
    reset to pending and ``summarise_cluster`` sent again. Pending
    tasks are only re-driven while the LLM workers are idle (no live lease and no provider call
    within the threshold): while they are busy a pending task is most likely queued behind the
    others, and re-sending it would only add duplicates (a 10,000-cluster run at 30 requests per
    minute keeps tasks queued for hours).
(c) ``GenerationJob`` running whose tasks are all finished but which was never finalized (the
    chord's callback was lost): ``job_finalize``.
(d) ``GenerationJob`` past its ``deadline`` (plus ``DEADLINE_GRACE_SECONDS``, so workers, which
    stop their own calls at the deadline, can record their outcome first): unfinished tasks fail
    with "job time limit exceeded" and the job is finalized.
(c)-(d) concern realtime jobs only: batch-mode jobs (hours, up to ``BATCH_TIMEOUT``) are driven
and ended by the batch poller (``llm.poll_batches``, llm/services/batches.py). The poller hands a
failed item's task to the realtime path with one ``summarise_cluster`` message and then leaves it
alone, so (b) must re-drive that task when the message is lost (a broker restart) or its worker
dies; tasks still waiting for a batch (``in_batch``) are the poller's.
(e) ``GenerationJob`` pending with no sign of life (its plan or start message was lost; a pending
    job also blocks reruns): plan or start is sent again, while the LLM workers are idle; it gets
    a deadline on the first re-drive, so (d) ends it if it never starts.

(f) ``LLMCall`` rows still ``started`` whose call died in flight (older than ``LLM_TIMEOUT`` plus
    a margin, or whose task's delivery is gone: finished, re-driven, lease expired) are marked
    ``unknown`` outcome at their projected cost, and their jobs' totals written again
    (llm/services/call_log.py).

Each re-drive is counted on the row, in its own ``redrives`` column (``ClusteringRun``,
``SummaryTask``, ``GenerationJob``; workers' claims are counted apart, in
``SummaryTask.deliveries`` and ``ClusteringRun.attempts``). A row already re-driven
``RECONCILE_MAX_REDRIVES`` (5) times that stalls again fails with an explanation naming the count
and the limit, instead of looping.

Safe to run concurrently: rows are claimed with ``select_for_update(skip_locked=True)`` and
re-checked under the lock (PostgreSQL re-evaluates the filter on rows changed meanwhile); a
re-driven row is no longer stale, so a second reconciler does not send it again. Messages are
sent after commit.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from clustering.models import ClusteringRun, RunStatus
from llm.models import (
    TERMINAL_STATES,
    BatchItem,
    GenerationJob,
    JobStatus,
    LLMCall,
    SummaryTask,
    TaskState,
)
from llm.services.call_log import calls_mark_unknown, jobs_usage_refresh
from llm.services.steps import job_finalize

logger = logging.getLogger(__name__)

#: Celery task name of the reconciler (defined in llm/tasks.py).
RECONCILE_TASK = "llm.reconcile"
#: Name of its beat schedule.
RECONCILE_SCHEDULE_NAME = "reconcile stalled work"
#: Seconds without a sign of life after which work counts as stalled.
DEFAULT_STALL_SECONDS = 300
#: Re-drives after which work that stalls again fails instead of being re-sent.
DEFAULT_MAX_REDRIVES = 5
#: Seconds between two reconciler runs (the beat interval).
DEFAULT_INTERVAL_SECONDS = 60
#: Seconds past a job's deadline before the reconciler ends it.
DEADLINE_GRACE_SECONDS = 60
#: Rows claimed per step and pass; the rest waits for the next pass (keeps transactions short).
BATCH_SIZE = 500
TIME_LIMIT_MESSAGE = "job time limit exceeded"


@dataclass
class ReconcileReport:
    """What one pass did, as counts (for logging and the task's result)."""

    runs_redriven: int = 0
    runs_failed: int = 0
    tasks_redriven: int = 0
    tasks_failed: int = 0
    jobs_redriven: int = 0
    jobs_failed: int = 0
    jobs_finalized: int = 0
    jobs_timed_out: int = 0
    tasks_timed_out: int = 0
    calls_unknown: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counts by name."""
        return asdict(self)


def _stall_seconds() -> int:
    return int(getattr(settings, "RECONCILE_STALL_SECONDS", DEFAULT_STALL_SECONDS))


def _max_redrives() -> int:
    return int(getattr(settings, "RECONCILE_MAX_REDRIVES", DEFAULT_MAX_REDRIVES))


def reconcile(
    *,
    now: datetime | None = None,
    stall_seconds: int | None = None,
    max_redrives: int | None = None,
) -> dict[str, int]:
    """One pass of the reconciler over runs, jobs and summary tasks (see the module docstring).

    ``stall_seconds`` defaults to ``settings.RECONCILE_STALL_SECONDS`` (300 s) and
    ``max_redrives`` to ``settings.RECONCILE_MAX_REDRIVES`` (5). Idempotent and safe to run
    concurrently. Returns the counts of :class:`ReconcileReport` by name.
    """
    now = now or timezone.now()
    stall = _stall_seconds() if stall_seconds is None else stall_seconds
    limit = _max_redrives() if max_redrives is None else max_redrives
    cutoff = now - timedelta(seconds=stall)
    report = ReconcileReport()
    _expire_jobs(now, report)
    _redrive_runs(now, cutoff, limit, report)
    idle = not _llm_workers_busy(now, cutoff)
    if idle:
        _redrive_pending_jobs(now, cutoff, limit, report)
    _redrive_tasks(now, cutoff, limit, idle, report)
    _mark_dead_calls(now, report)
    _finalize_finished_jobs(report)
    counts = report.as_dict()
    if any(counts.values()):
        logger.info("reconcile: %s", counts)
    return counts


def _realtime_path_tasks() -> QuerySet[SummaryTask]:
    """``SummaryTask`` rows the realtime workers own: every task of a realtime job, and the
    tasks a batch-mode job handed to the realtime path (no longer ``in_batch``, with a batch item
    that fell back or went missing). Tasks waiting for a batch belong to the batch poller."""
    handed_over = BatchItem.objects.filter(
        task=OuterRef("pk"), state__in=[BatchItem.State.FALLBACK, BatchItem.State.MISSING]
    )
    return SummaryTask.objects.alias(handed_over=Exists(handed_over)).filter(
        Q(job__mode=GenerationJob.Mode.REALTIME) | Q(in_batch=False, handed_over=True)
    )


def _llm_workers_busy(now: datetime, cutoff: datetime) -> bool:
    """True while some worker holds a live lease on a realtime-path task or a provider call was
    recorded since ``cutoff``: pending tasks are then probably queued, not lost. (Tasks waiting
    for a batch hold leases longer than ``BATCH_TIMEOUT`` and say nothing about the workers.)"""
    return (
        _realtime_path_tasks().filter(state=TaskState.RUNNING, lease_until__gt=now).exists()
        or LLMCall.objects.filter(created_at__gte=cutoff).exists()
    )


def _fail_unfinished_tasks(job: GenerationJob, error: str, now: datetime) -> int:
    """Fail every unfinished task of ``job`` with ``error``; returns how many."""
    return (
        SummaryTask.objects.filter(job=job)
        .exclude(state__in=TERMINAL_STATES)
        .update(state=TaskState.FAILED, last_error=error, lease_until=None, finished_at=now)
    )


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


def _stall_age(now: datetime, cutoff: datetime) -> str:
    """The stall threshold as words, e.g. ``"more than 300 s"``."""
    return f"more than {round((now - cutoff).total_seconds())} s"


# --- (d) deadlines ------------------------------------------------------------------------------


def _expire_jobs(now: datetime, report: ReconcileReport) -> None:
    late = now - timedelta(seconds=DEADLINE_GRACE_SECONDS)
    with transaction.atomic():
        jobs = list(
            GenerationJob.objects.select_for_update(skip_locked=True)
            .filter(
                status__in=[JobStatus.PENDING, JobStatus.RUNNING],
                mode=GenerationJob.Mode.REALTIME,
                deadline__lt=late,
            )
            .order_by("pk")[:BATCH_SIZE]
        )
        for job in jobs:
            assert job.deadline is not None
            error = (
                f"{TIME_LIMIT_MESSAGE} (LLM_JOB_TIME_LIMIT, deadline "
                f"{job.deadline.isoformat(timespec='seconds')}); failed by the reconciler"
            )
            failed = _fail_unfinished_tasks(job, error, now)
            report.tasks_timed_out += failed
            report.jobs_timed_out += 1
            if job.status == JobStatus.PENDING:
                GenerationJob.objects.filter(pk=job.pk).update(
                    status=JobStatus.FAILED,
                    finished_at=now,
                    message=f"{TIME_LIMIT_MESSAGE}: the job never started before its deadline",
                )
                job_finalize(job_id=job.pk)
            else:
                job_finalize(job_id=job.pk)
                GenerationJob.objects.filter(pk=job.pk).update(
                    message=f"{TIME_LIMIT_MESSAGE}: {failed} unfinished cluster(s) failed"
                )
            logger.warning("job %s passed its deadline: %s task(s) failed", job.pk, failed)


# --- (a) clustering runs ------------------------------------------------------------------------


def _redrive_runs(now: datetime, cutoff: datetime, limit: int, report: ReconcileReport) -> None:
    from llm.tasks import pipeline_chain

    stalled = Q(status=RunStatus.PENDING, last_sign__lt=cutoff) | Q(
        status=RunStatus.RUNNING, last_sign__lt=cutoff
    )
    redriven: list[int] = []
    with transaction.atomic():
        runs = list(
            ClusteringRun.objects.select_for_update(skip_locked=True)
            .alias(last_sign=Coalesce("heartbeat_at", "started_at", "created_at"))
            .filter(stalled)
            .order_by("pk")[:BATCH_SIZE]
        )
        for run in runs:
            if run.redrives >= limit:
                ClusteringRun.objects.filter(pk=run.pk).update(
                    status=RunStatus.FAILED,
                    finished_at=now,
                    error=(
                        f"stalled while {run.status} for {_stall_age(now, cutoff)}: gave up after "
                        f"being re-driven {_times(run.redrives)} by the reconciler "
                        f"(RECONCILE_MAX_REDRIVES {limit}) and {run.attempts} execution(s) "
                        "without finishing"
                    ),
                    progress_message=(
                        f"Failed: stalled after being re-driven {_times(run.redrives)}"
                    ),
                )
                report.runs_failed += 1
                logger.warning("run %s failed: stalled after %s re-drives", run.pk, run.redrives)
                continue
            ClusteringRun.objects.filter(pk=run.pk).update(
                redrives=F("redrives") + 1,
                started_at=now,
                heartbeat_at=now,
                progress_message=f"Re-driven by the reconciler ({run.redrives + 1} of {limit})",
            )
            redriven.append(run.pk)
        if redriven:

            def send() -> None:
                for run_id in redriven:
                    # the chain reads the run's intent (provider, models, force) from its row
                    pipeline_chain(run_id=run_id).apply_async()

            transaction.on_commit(send)
    report.runs_redriven += len(redriven)
    if redriven:
        logger.warning("re-driven stalled clustering runs %s", redriven)


# --- (e) pending jobs ---------------------------------------------------------------------------


def _redrive_pending_jobs(
    now: datetime, cutoff: datetime, limit: int, report: ReconcileReport
) -> None:
    from llm.tasks import plan_summaries, start_job

    redriven: list[tuple[int, str, int]] = []
    failed: list[int] = []
    with transaction.atomic():
        jobs = list(
            GenerationJob.objects.select_for_update(skip_locked=True)
            .alias(last_sign=Coalesce("started_at", "created_at"))
            .filter(status=JobStatus.PENDING, last_sign__lt=cutoff)
            .order_by("pk")[:BATCH_SIZE]
        )
        for job in jobs:
            if job.redrives >= limit:
                _fail_pending_job(job, now, limit)
                failed.append(job.pk)
                continue
            # started_at of a pending job = its last re-drive; planning overwrites it
            update: dict[str, Any] = {"started_at": now, "redrives": F("redrives") + 1}
            if job.deadline is None:
                update["deadline"] = now + timedelta(seconds=settings.LLM_JOB_TIME_LIMIT)
            GenerationJob.objects.filter(pk=job.pk).update(**update)
            redriven.append((job.pk, job.scope, job.run_id))

        def send() -> None:
            # the job's row holds its provider, models and force: the messages carry ids only
            for job_id, scope, run_id in redriven:
                if scope == GenerationJob.Scope.RUN:
                    plan_summaries.delay(run_id)
                else:
                    start_job.delay(job_id)

        if redriven:
            transaction.on_commit(send)
    report.jobs_redriven += len(redriven)
    report.jobs_failed += len(failed)
    if redriven:
        logger.warning("re-driven pending generation jobs %s", [r[0] for r in redriven])
    if failed:
        logger.warning("pending generation jobs %s failed: never started", failed)


def _fail_pending_job(job: GenerationJob, now: datetime, limit: int) -> None:
    """Fail a pending job that never started although its message was re-sent ``limit``
    times: its unfinished tasks fail with the reason, then the job is finalized as failed."""
    why = (
        f"never started: its {'plan' if job.scope == GenerationJob.Scope.RUN else 'start'} "
        f"message was re-sent {_times(job.redrives)} by the reconciler "
        f"(RECONCILE_MAX_REDRIVES {limit}); is a worker consuming the llm queue?"
    )
    _fail_unfinished_tasks(job, why, now)
    GenerationJob.objects.filter(pk=job.pk).update(
        status=JobStatus.FAILED, finished_at=now, message=why
    )
    job_finalize(job_id=job.pk)


# --- (b) summary tasks --------------------------------------------------------------------------


def _redrive_tasks(
    now: datetime, cutoff: datetime, limit: int, idle: bool, report: ReconcileReport
) -> None:
    from llm.tasks import summarise_cluster

    stalled = Q(state=TaskState.RUNNING, lease_until__lt=now) | Q(
        state=TaskState.RUNNING, lease_until__isnull=True, updated_at__lt=cutoff
    )
    if idle:
        stalled |= Q(state=TaskState.PENDING, updated_at__lt=cutoff)
    redriven: list[int] = []
    with transaction.atomic():
        tasks = list(
            _realtime_path_tasks()
            .select_for_update(skip_locked=True, of=("self",))
            .filter(stalled, job__status=JobStatus.RUNNING)
            .order_by("pk")[:BATCH_SIZE]
        )
        failed: list[int] = []
        for task in tasks:
            if task.redrives >= limit:
                why = "its lease expired" if task.state == TaskState.RUNNING else "never picked up"
                SummaryTask.objects.filter(pk=task.pk).update(
                    state=TaskState.FAILED,
                    lease_until=None,
                    finished_at=now,
                    updated_at=now,
                    last_error=(
                        f"stalled ({why}): gave up after being re-driven "
                        f"{_times(task.redrives)} by the reconciler (RECONCILE_MAX_REDRIVES "
                        f"{limit}) and {task.deliveries} worker claim(s) without finishing. "
                        f"Last error: {task.last_error or 'none'}"
                    )[:4000],
                )
                failed.append(task.pk)
            else:
                redriven.append(task.pk)
        if redriven:
            SummaryTask.objects.filter(pk__in=redriven).update(
                state=TaskState.PENDING,
                lease_until=None,
                redrives=F("redrives") + 1,
                updated_at=now,
            )

            def send() -> None:
                for task_id in redriven:
                    summarise_cluster.delay(task_id)

            transaction.on_commit(send)
    report.tasks_redriven += len(redriven)
    report.tasks_failed += len(failed)
    if redriven:
        logger.warning("re-driven %s stalled summary task(s)", len(redriven))
    if failed:
        logger.warning("summary tasks %s failed: stalled after too many re-drives", failed)


# --- (f) calls that died in flight ---------------------------------------------------------


def _mark_dead_calls(now: datetime, report: ReconcileReport) -> None:
    """Mark ``started`` call rows of dead calls ``unknown`` (llm/services/call_log.py) and write
    the totals of their jobs again (a finished job's cost then includes the projection)."""
    marked, job_ids = calls_mark_unknown(now=now)
    report.calls_unknown += marked
    if not job_ids:
        return
    jobs_usage_refresh(job_ids)
    logger.warning("calls of unknown outcome (worker died in flight) in jobs %s", job_ids)


# --- (c) jobs never finalized -------------------------------------------------------------------


def _finalize_finished_jobs(report: ReconcileReport) -> None:
    unfinished = SummaryTask.objects.filter(job=OuterRef("pk")).exclude(state__in=TERMINAL_STATES)
    job_ids = list(
        GenerationJob.objects.filter(status=JobStatus.RUNNING, mode=GenerationJob.Mode.REALTIME)
        .filter(~Exists(unfinished))
        .order_by("pk")
        .values_list("pk", flat=True)[:BATCH_SIZE]
    )
    for job_id in job_ids:
        # job_finalize is idempotent: a finalize racing with the chord's callback is harmless
        if job_finalize(job_id=job_id):
            report.jobs_finalized += 1
    if job_ids:
        logger.warning("finalized generation jobs %s whose callback was lost", job_ids)


# --- the beat schedule ------------------------------------------------------------------------


def reconcile_schedule_ensure(*, using: str = "default") -> tuple[PeriodicTask, str]:
    """Register the reconciler's beat schedule (every ``RECONCILE_INTERVAL_SECONDS``, 60 s), or
    bring its interval back to that setting; a row disabled in the admin stays disabled.
    Returns ``(row, state)`` as ``llm.services.maintenance.interval_task_ensure``.

    The task goes to the ``default`` queue, so a backlog of provider calls on the ``llm`` queue
    cannot delay it, and a message older than two intervals expires instead of piling up while
    no worker runs.
    """
    from llm.services.maintenance import interval_task_ensure

    return interval_task_ensure(
        name=RECONCILE_SCHEDULE_NAME,
        task=RECONCILE_TASK,
        every=int(getattr(settings, "RECONCILE_INTERVAL_SECONDS", DEFAULT_INTERVAL_SECONDS)),
        description=(
            "Re-drives stalled clustering runs, summary tasks and generation jobs and ends "
            "jobs past their deadline (llm/services/reconcile.py). The interval follows "
            "RECONCILE_INTERVAL_SECONDS on every start; enable or disable it here."
        ),
        using=using,
    )
