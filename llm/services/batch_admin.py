"""Operator actions on provider batches (``manage.py llm_batch``): start a batch job now, list
batches, poll and collect them now, cancel one.

Everything goes through the batch driver of :mod:`llm.services.batches`, so what these functions
do is exactly what beat's ``llm.poll_batches`` would do, only now: the same lease on the job (one
driver at a time), the same crash-safe submission, the same collection and realtime fallback.

Errors are :class:`BatchAdminError` with one sentence for the operator and an exit code: 2 for
bad input (unknown dataset, cluster numbers or batch ids, a provider without a batch API), 1 for
an action that cannot be carried out now (batch already ended, job busy, provider error).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from clustering.datasets.registry import BUILTIN_DATASETS
from clustering.models import Cluster, ClusteringRun, Dataset, RunStatus
from clustering.services import UnknownDatasetError
from llm.models import (
    TERMINAL_STATES,
    BatchItem,
    GenerationJob,
    JobStatus,
    ProviderBatch,
    SummaryTask,
)
from llm.providers.base import ProviderError, redact
from llm.providers.registry import (
    BATCH_PROVIDERS,
    PROVIDERS,
    ProviderNotConfigured,
    batch_provider_get,
    default_judge_model,
    default_model,
    missing_key,
    provider_check,
)
from llm.services import batches as driver
from llm.services.generation import job_start

State = ProviderBatch.State

#: ``llm_batch list --status`` -> batch states. A collected batch (results processed) counts as
#: completed when at least one of its items was answered, else as failed (it ended failed,
#: expired, cancelled or timed out, and every item went to realtime or was skipped).
PENDING_STATES = (State.PREPARING, State.SUBMITTED, State.RUNNING)
FAILED_STATES = (State.FAILED, State.EXPIRED, State.CANCELLED, State.TIMED_OUT)
STATUSES = ("pending", "completed", "failed")
OPERATOR_CANCEL_NOTE = "cancelled by an operator (llm_batch cancel)"


class BatchAdminError(Exception):
    """An operator request that cannot be carried out; ``str(error)`` is one sentence.

    ``exit_code`` is 2 for bad input, 1 for an action that cannot be done now.
    """

    def __init__(self, message: str, *, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# --- create -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchJobCreated:
    """A batch-mode job started by :func:`batch_job_create`.

    ``cached`` clusters were served from the summary cache (or kept: a curator's status) and need
    no request; ``to_generate`` clusters wait for (or are in) generation batches; ``batches`` are
    the job's batch rows after the first driver step, ``counts`` what that step did (see
    :func:`llm.services.batches.job_batch_advance`).
    """

    job: GenerationJob
    run: ClusteringRun
    clusters: int
    cached: int
    to_generate: int
    batches: list[ProviderBatch]
    counts: dict[str, int]


def batch_provider_check(name: str) -> None:
    """Raise :class:`BatchAdminError` (exit 2) unless ``name`` is a configured provider with a
    batch API and the batch API is switched on; never calls the provider."""
    if name not in PROVIDERS:
        raise BatchAdminError(f"unknown provider {name!r}; choose one of {', '.join(PROVIDERS)}")
    if name not in BATCH_PROVIDERS:
        raise BatchAdminError(
            f"provider {name} has no batch API; use one of {', '.join(BATCH_PROVIDERS)} "
            "(--provider or LLM_PROVIDER)"
        )
    try:
        provider_check(name)
    except ProviderNotConfigured as exc:
        raise BatchAdminError(str(exc)) from None
    if not settings.BATCH_API_ENABLED:
        raise BatchAdminError("the batch API is switched off (BATCH_API_ENABLED=false)")


def _latest_run(dataset: str | None) -> ClusteringRun:
    """The latest succeeded clustering run of ``dataset`` (or of the only dataset that has one).

    Raises:
        BatchAdminError: unknown dataset, no succeeded run, or no dataset given while several
            datasets have runs.
    """
    runs = ClusteringRun.objects.filter(status=RunStatus.SUCCEEDED).select_related("dataset")
    if dataset is None:
        slugs = sorted(set(runs.values_list("dataset__slug", flat=True)))
        if not slugs:
            raise BatchAdminError("no clustering run has succeeded yet; run the clustering first")
        if len(slugs) > 1:
            raise BatchAdminError(
                f"several datasets have clustering runs ({', '.join(slugs)}); choose one with "
                "--dataset"
            )
        dataset = slugs[0]
    if not Dataset.objects.filter(slug=dataset).exists() and dataset not in BUILTIN_DATASETS:
        known = sorted(set(BUILTIN_DATASETS) | set(Dataset.objects.values_list("slug", flat=True)))
        raise BatchAdminError(str(UnknownDatasetError(dataset, known)))
    run = runs.filter(dataset__slug=dataset).order_by("-created_at", "-id").first()
    if run is None:
        raise BatchAdminError(
            f"dataset {dataset} has no succeeded clustering run; run "
            f"`python manage.py cluster --dataset {dataset}` first"
        )
    return run


def _clusters_of(run: ClusteringRun, numbers: Sequence[int] | None) -> list[Cluster]:
    """The run's clusters with these numbers (all of them when ``numbers`` is None).

    Raises:
        BatchAdminError: a number that is not a cluster of the run, or a run without clusters.
    """
    clusters = Cluster.objects.filter(run=run).only("id", "number", "composition_hash")
    if numbers is None:
        found = list(clusters.order_by("number"))
        if not found:
            raise BatchAdminError(f"run {run.pk} of dataset {run.dataset.slug} has no clusters")
        return found
    wanted = sorted(set(numbers))
    found = list(clusters.filter(number__in=wanted).order_by("number"))
    missing = sorted(set(wanted) - {c.number for c in found})
    if missing:
        numbers_of_run = list(Cluster.objects.filter(run=run).values_list("number", flat=True))
        span = (
            f"its clusters are numbered {min(numbers_of_run)}-{max(numbers_of_run)}"
            if numbers_of_run
            else "it has no clusters"
        )
        raise BatchAdminError(
            f"unknown cluster number(s) {', '.join(map(str, missing))} in run {run.pk} of "
            f"dataset {run.dataset.slug}; {span}"
        )
    return found


def _busy_job(run: ClusteringRun, clusters: list[Cluster]) -> GenerationJob | None:
    """A pending or running job of the run with an unfinished task on one of ``clusters``, if
    any (a second job would pay for the same summaries twice)."""
    task = (
        SummaryTask.objects.filter(
            job__run=run,
            job__status__in=[JobStatus.PENDING, JobStatus.RUNNING],
            cluster_id__in=[c.pk for c in clusters],
        )
        .exclude(state__in=TERMINAL_STATES)
        .select_related("job")
        .order_by("job_id")
        .first()
    )
    return task.job if task is not None else None


def batch_job_create(
    *,
    dataset: str | None,
    cluster_numbers: Sequence[int] | None = None,
    batch_size: int | None = None,
    force: bool = False,
    provider: str | None = None,
    submit: bool = True,
) -> BatchJobCreated:
    """Summarise clusters of the latest succeeded run of ``dataset`` through the provider's batch
    API, whatever ``BATCH_THRESHOLD`` says (an operator asked for batch).

    Creates a ``GenerationJob`` (scope ``clusters``, mode ``batch``) with one task per cluster
    (every cluster of the run, or those numbered ``cluster_numbers``), resolves cache hits as
    :func:`~llm.services.generation.job_start` does (``force`` regenerates all but curator-locked
    summaries), hands the misses to the batch driver and, with ``submit``, runs one driver step
    now: batch rows are written and submitted (at most ``batch_size`` requests per batch, else
    ``BATCH_MAX_REQUESTS_PER_BATCH`` and the provider's limits). Later steps (polling, collecting,
    the judge batches) are beat's ``llm.poll_batches`` or ``llm_batch fetch``; ``batch_size``
    is stored with the job and caps every batch of it (generation, judge and regeneration).

    Args:
        dataset: dataset slug; None = the only dataset with a succeeded run.
        cluster_numbers: cluster numbers of that run; None = all its clusters.
        batch_size: maximum requests per batch (>= 1), or None.
        force: regenerate cached summaries (curators' statuses are still kept).
        provider: gemini, openai or anthropic; None = ``LLM_PROVIDER``.
        submit: False writes the job and its waiting tasks but submits nothing (benchmarks).

    Raises:
        BatchAdminError: unknown dataset or cluster numbers, no succeeded run, a provider without
            a batch API (or without its key), ``batch_size`` < 1, or another job still working on
            these clusters (all exit code 2; nothing is written then).
    """
    name = provider or settings.LLM_PROVIDER
    batch_provider_check(name)
    if batch_size is not None and batch_size < 1:
        raise BatchAdminError(f"--batch-size must be at least 1, got {batch_size}")
    run = _latest_run(dataset)
    clusters = _clusters_of(run, cluster_numbers)
    busy = _busy_job(run, clusters)
    if busy is not None:
        raise BatchAdminError(
            f"job {busy.pk} ({busy.mode}, {busy.status}) is still summarising clusters of run "
            f"{run.pk}; wait for it to finish or cancel it first"
        )
    with transaction.atomic():
        job = GenerationJob.objects.create(
            run=run,
            scope=GenerationJob.Scope.CLUSTERS,
            mode=GenerationJob.Mode.BATCH,
            provider=name,
            model=default_model(name),
            judge_model=default_judge_model(name),
            force=force,
            batch_size=batch_size,
        )
        SummaryTask.objects.bulk_create(
            [SummaryTask(job=job, cluster=c) for c in clusters], batch_size=2000
        )
        misses = job_start(job_id=job.pk)
        driver.job_batch_begin(job_id=job.pk, task_ids=misses)
    counts = dict.fromkeys(
        ("recovered", "polled", "collected", "submitted", "items", "fallbacks", "finalized"), 0
    )
    if submit or not misses:  # a job with nothing to generate is finalized at once
        counts = driver.job_batch_advance(job_id=job.pk, batch_size=batch_size)
    job.refresh_from_db()
    return BatchJobCreated(
        job=job,
        run=run,
        clusters=len(clusters),
        cached=len(clusters) - len(misses),
        to_generate=len(misses),
        batches=list(ProviderBatch.objects.filter(job=job).order_by("kind", "chunk_index", "pk")),
        counts=counts,
    )


# --- list ---------------------------------------------------------------------------------------


def batch_list(*, status: str | None = None, limit: int | None = None) -> list[ProviderBatch]:
    """Provider batches, newest first, each annotated with ``answered`` (items with a processed
    result) and ``sent_to_realtime`` (items redone in realtime or missing).

    ``status``: pending (preparing, submitted, running), completed (succeeded, or collected with
    at least one item answered), failed (failed, expired, cancelled, timed out, or collected with
    no item answered); None = all. ``limit``: at most this many rows.

    Raises:
        BatchAdminError: unknown status.
    """
    rows: QuerySet[ProviderBatch] = ProviderBatch.objects.annotate(
        answered=Count("items", filter=Q(items__state=BatchItem.State.DONE)),
        sent_to_realtime=Count(
            "items",
            filter=Q(items__state__in=[BatchItem.State.FALLBACK, BatchItem.State.MISSING]),
        ),
    ).order_by("-created_at", "-id")
    if status == "pending":
        rows = rows.filter(state__in=PENDING_STATES)
    elif status == "completed":
        rows = rows.filter(Q(state=State.SUCCEEDED) | Q(state=State.COLLECTED, answered__gt=0))
    elif status == "failed":
        rows = rows.filter(Q(state__in=FAILED_STATES) | Q(state=State.COLLECTED, answered=0))
    elif status is not None:
        raise BatchAdminError(f"unknown status {status!r}; choose one of {', '.join(STATUSES)}")
    return list(rows[:limit] if limit else rows)


def batch_outcome(batch: ProviderBatch) -> str:
    """pending, completed or failed, as :func:`batch_list` filters (``batch`` must come from
    :func:`batch_list`, which annotates ``answered``)."""
    if batch.state in PENDING_STATES:
        return "pending"
    if batch.state == State.COLLECTED:
        return "completed" if getattr(batch, "answered", 0) else "failed"
    return "completed" if batch.state == State.SUCCEEDED else "failed"


# --- fetch --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchChange:
    """One batch whose row changed during a fetch: ``before`` is None for a batch created by it.

    States are ``state/provider_state``; ``completed``/``failed`` are the provider's item counts.
    """

    batch_id: int
    display_name: str
    kind: str
    before: str | None
    after: str
    provider_batch_id: str
    requests: int
    completed: int
    failed: int
    error: str


@dataclass(frozen=True)
class JobFetch:
    """What one driver step did to one job (``busy``: another driver held the job's lease, so
    nothing was done)."""

    job_id: int
    busy: bool
    counts: dict[str, int]
    status: str
    progress: str
    changes: list[BatchChange] = field(default_factory=list)


def _snapshot(job_id: int) -> dict[int, tuple[str, str, int, int, str]]:
    return {
        row[0]: row[1:]
        for row in ProviderBatch.objects.filter(job_id=job_id).values_list(
            "id", "state", "provider_state", "completed_count", "failed_count", "provider_batch_id"
        )
    }


def _lease_held(job_id: int, now: datetime) -> bool:
    return GenerationJob.objects.filter(pk=job_id, driver_lease_until__gt=now).exists()


def _require_keys(job_ids: Sequence[int]) -> None:
    """Raise :class:`BatchAdminError` (exit 2) when this process lacks the key of one of the
    jobs' providers, before anything is written: a process that cannot reach the provider
    leaves batch rows and tasks as they are."""
    jobs = GenerationJob.objects.filter(pk__in=list(job_ids)).order_by("pk")
    for job_id, name in jobs.values_list("pk", "provider"):
        missing = missing_key(name)
        if missing:
            raise BatchAdminError(
                f"job {job_id} uses provider {name} but {missing} in this process; nothing "
                "was fetched and no batch or task was changed (run it where the key is set)"
            )


def batch_fetch(
    *, ids: Sequence[int] | None = None, all_pending: bool = False, batch_size: int | None = None
) -> list[JobFetch]:
    """Poll and collect now: one driver step (:func:`~llm.services.batches.job_batch_advance`)
    for every job owning one of the batches ``ids``, restricted to those batches (they alone
    are recovered, polled and collected; no new batch is written), or, with ``all_pending``,
    for every job with a batch whose results are not collected yet and every running
    batch-mode job, as beat's ``llm.poll_batches`` does: the step also submits the next batches
    those jobs need (e.g. the judge batch after a generation batch) and finalizes jobs that are
    done. ``batch_size`` is stored with the jobs (it caps each of their later batches). Returns
    one :class:`JobFetch` per job, in job order.

    Raises:
        BatchAdminError: unknown batch ids (exit 2, nothing is done), neither ``ids`` nor
            ``all_pending``, ``batch_size`` < 1, or the key of a job's provider is not set in
            this process (exit 2; no row is changed).
    """
    if batch_size is not None and batch_size < 1:
        raise BatchAdminError(f"--batch-size must be at least 1, got {batch_size}")
    found: dict[int, int] = {}
    if ids:
        wanted = sorted(set(ids))
        found = dict(
            ProviderBatch.objects.filter(pk__in=wanted).values_list("id", "job_id").order_by("id")
        )
        unknown = [i for i in wanted if i not in found]
        if unknown:
            raise BatchAdminError(
                f"unknown batch id(s) {', '.join(map(str, unknown))}; "
                "`manage.py llm_batch list` shows the batches"
            )
        job_ids = sorted(set(found.values()))
    elif all_pending:
        uncollected = ProviderBatch.objects.exclude(state=State.COLLECTED).values_list(
            "job_id", flat=True
        )
        # and, as beat does, running batch jobs whose clusters finish in realtime (finalize)
        running = GenerationJob.objects.filter(
            mode=GenerationJob.Mode.BATCH, status=JobStatus.RUNNING
        ).values_list("id", flat=True)
        job_ids = sorted(set(uncollected) | set(running))
    else:
        raise BatchAdminError("give batch ids (--ids ID ...) or --all-pending")
    _require_keys(job_ids)
    if batch_size is not None:  # the operator's size, for every later batch of these jobs
        GenerationJob.objects.filter(pk__in=job_ids).update(batch_size=batch_size)
    report: list[JobFetch] = []
    for job_id in job_ids:
        before = _snapshot(job_id)
        busy = _lease_held(job_id, timezone.now())
        counts: dict[str, int] = {}
        named = [i for i, owner in found.items() if owner == job_id] if ids else None
        if not busy:
            counts = driver.job_batch_advance(job_id=job_id, batch_ids=named)
        after = _snapshot(job_id)
        rows = ProviderBatch.objects.filter(pk__in=list(after)).in_bulk()
        changes = []
        for batch_id in sorted(after):
            if before.get(batch_id) == after[batch_id]:
                continue
            row = rows[batch_id]
            old = before.get(batch_id)
            changes.append(
                BatchChange(
                    batch_id=batch_id,
                    display_name=row.display_name,
                    kind=row.kind,
                    before=None if old is None else f"{old[0]}/{old[1] or '-'}",
                    after=f"{row.state}/{row.provider_state or '-'}",
                    provider_batch_id=row.provider_batch_id,
                    requests=row.request_count,
                    completed=row.completed_count,
                    failed=row.failed_count,
                    error=row.error,
                )
            )
        job = GenerationJob.objects.only("status", "progress_message").get(pk=job_id)
        report.append(
            JobFetch(
                job_id=job_id,
                busy=busy,
                counts=counts,
                status=job.status,
                progress=job.progress_message,
                changes=changes,
            )
        )
    return report


# --- cancel -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchCancelled:
    """The outcome of :func:`batch_cancel`: the batch row afterwards, whether the provider was
    asked (False: it never reached the provider), the provider's state right after the request,
    how many of its items went to realtime now (more follow once the provider reports the batch
    ended, at the next driver step) and how many it answered before the cancellation (kept)."""

    batch: ProviderBatch
    asked_provider: bool
    provider_state: str
    sent_to_realtime: int
    answered: int
    job_status: str


def batch_cancel(*, batch_id: int) -> BatchCancelled:
    """Cancel one provider batch; its job goes on.

    The provider is asked to cancel (a batch never submitted is marked cancelled here; one whose
    submission may have reached the provider is looked up by display name first). Then one driver
    step runs: once the provider reports the batch ended, results it produced before the
    cancellation are processed as usual and every item without one is retried in realtime
    (``summarise_cluster``), so every cluster of the job still gets a summary. To stop spending
    on the whole job instead, cancel the job (``POST /api/jobs/{id}/cancel/``): its open batches
    are cancelled and its waiting clusters skipped.

    Raises:
        BatchAdminError: unknown id (exit 2); the batch already ended, its job is being advanced
            by another process, or the provider refused or could not be reached (exit 1).
    """
    batch = ProviderBatch.objects.filter(pk=batch_id).first()
    if batch is None:
        raise BatchAdminError(
            f"unknown batch id {batch_id}; `manage.py llm_batch list` shows the batches"
        )
    if batch.state not in PENDING_STATES:
        raise BatchAdminError(
            f"batch {batch_id} ({batch.display_name}) already ended ({batch.state}); "
            "nothing to cancel",
            exit_code=1,
        )
    try:
        provider = batch_provider_get(batch.provider)
    except ProviderNotConfigured as exc:
        raise BatchAdminError(f"cannot cancel batch {batch_id}: {exc}", exit_code=1) from None
    lease = driver.DriverLease.take(batch.job_id)
    if lease is None:
        raise BatchAdminError(
            f"job {batch.job_id} is being advanced by another process right now; try again in a "
            "minute",
            exit_code=1,
        )
    asked, provider_state = False, batch.provider_state
    try:
        batch.refresh_from_db()
        if batch.state not in PENDING_STATES:
            raise BatchAdminError(
                f"batch {batch_id} ({batch.display_name}) already ended ({batch.state}); "
                "nothing to cancel",
                exit_code=1,
            )
        provider_id = batch.provider_batch_id
        if not provider_id and batch.submit_attempts > 0:
            # the submission may have reached the provider: find it rather than leave it running
            found = driver._find_submitted(batch, provider)
            if found is not None:
                driver._adopt(batch, found)
                provider_id = found.batch_id
        if provider_id:
            status = provider.batch_cancel(provider_id)
            asked, provider_state = True, status.raw_state
            ProviderBatch.objects.filter(pk=batch.pk).update(
                provider_state=status.raw_state, error=OPERATOR_CANCEL_NOTE
            )
        else:
            ProviderBatch.objects.filter(pk=batch.pk).update(
                state=State.CANCELLED,
                finished_at=timezone.now(),
                error=f"{OPERATOR_CANCEL_NOTE} before it reached the provider",
            )
    except ProviderError as exc:
        raise BatchAdminError(
            f"the provider did not cancel batch {batch_id} ({batch.display_name}): "
            f"{redact(exc.message)}",
            exit_code=1,
        ) from None
    finally:
        lease.release()
    before = BatchItem.objects.filter(
        batch=batch, state__in=[BatchItem.State.FALLBACK, BatchItem.State.MISSING]
    ).count()
    driver.job_batch_advance(job_id=batch.job_id)
    batch.refresh_from_db()
    after = BatchItem.objects.filter(
        batch=batch, state__in=[BatchItem.State.FALLBACK, BatchItem.State.MISSING]
    ).count()
    job_status = GenerationJob.objects.values_list("status", flat=True).get(pk=batch.job_id)
    return BatchCancelled(
        batch=batch,
        asked_provider=asked,
        provider_state=provider_state,
        sent_to_realtime=after - before,
        answered=BatchItem.objects.filter(batch=batch, state=BatchItem.State.DONE).count(),
        job_status=job_status,
    )
