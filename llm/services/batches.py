"""Batch mode: a job's generation and judge steps go through the provider's batch API.

Driven from the database: :func:`job_batch_advance` is called by the beat task ``poll_batches``
(every ``BATCH_POLL_INTERVAL`` seconds) and right after planning. Each call, under a short lease
on the job so only one driver works on it at a time:

1. recovers batches written but not known to be submitted (``preparing``): the provider is asked
   for a batch with the row's deterministic display name first, so a crash between submission and
   saving the id never leads to a second, paid, submission;
2. polls open batches; a batch open longer than its provider's window (:func:`batch_timeout`:
   Gemini 48 h, OpenAI and Anthropic 24 h, ``BATCH_TIMEOUT_<PROVIDER>`` or ``BATCH_TIMEOUT``) is
   cancelled (``timed_out``);
3. collects finished batches: results are streamed and matched by ``custom_id``; each item goes
   through the same validation, judge and cache steps as realtime; items with an error that
   another attempt cannot fix (API errors, expiry, cancellation, missing results) are handed to
   the realtime path individually;
   a batch refused for the provider's enqueued-token limit is split in two and retried in
   batch instead (:mod:`llm.services.batch_split`);
4. submits the next batches for tasks waiting for a generation or judge step (split by the
   provider's request and byte limits and ``BATCH_MAX_REQUESTS_PER_BATCH``);
5. finalizes the job when every task is finished.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Max
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
from llm.providers.base import ProviderError, ProviderRequest, redact
from llm.providers.batch import BatchProvider, BatchStatus
from llm.providers.registry import BATCH_PROVIDERS, ProviderNotConfigured, batch_provider_get
from llm.services import steps
from llm.services.batch_collect import LOAD_CHUNK, _collect, _progress
from llm.services.batch_lease import (
    DEFAULT_BATCH_TIMEOUTS,
    RENEW_FRACTION,
    DriverLease,
    DriverLeaseLost,
    batch_timeout,
    timeout_setting,
)
from llm.services.batch_split import split_must_wait
from llm.services.context import cluster_context_build
from llm.services.deployment import (
    batch_display_name,
    deployment_identity,
    scoped_custom_id,
)

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_BATCH_TIMEOUTS",
    "LOAD_CHUNK",
    "RENEW_FRACTION",
    "DriverLease",
    "DriverLeaseLost",
    "batch_mode_wanted",
    "batch_timeout",
    "job_batch_advance",
    "job_batch_begin",
    "timeout_setting",
]

OPEN_STATES = (ProviderBatch.State.SUBMITTED, ProviderBatch.State.RUNNING)
_FINAL_FROM_PROVIDER = {
    "succeeded": ProviderBatch.State.SUCCEEDED,
    "failed": ProviderBatch.State.FAILED,
    "cancelled": ProviderBatch.State.CANCELLED,
    "expired": ProviderBatch.State.EXPIRED,
}
#: a preparing batch younger than this may still be in its submitter's hands (seconds)
PREPARING_GRACE_SECONDS = 120
#: clock skew allowed between us and the provider when ruling out batches created before a
#: row was written (seconds)
CLOCK_SKEW_SECONDS = 60


def batch_mode_wanted(*, provider: str, misses: int) -> bool:
    """Whether a job with ``misses`` clusters to generate should use the batch API."""
    return (
        settings.BATCH_API_ENABLED
        and provider in BATCH_PROVIDERS
        and misses > settings.BATCH_THRESHOLD
    )


def job_batch_begin(*, job_id: int, task_ids: Sequence[int]) -> None:
    """Switch a planned job to batch mode: its tasks wait for a generation batch.

    Their lease outlasts the provider's :func:`batch_timeout` so the stalled-work reconciler
    leaves them to the batch driver, and the job's deadline becomes that timeout plus
    ``LLM_JOB_TIME_LIMIT`` (seconds) so that items redone in realtime after a long batch still
    have their time.
    """
    now = timezone.now()
    provider = GenerationJob.objects.values_list("provider", flat=True).get(pk=job_id)
    window = batch_timeout(provider)
    lease = now + timedelta(seconds=window + 3600)
    deadline = now + timedelta(seconds=window + settings.LLM_JOB_TIME_LIMIT)
    with transaction.atomic():
        GenerationJob.objects.filter(pk=job_id).update(
            mode=GenerationJob.Mode.BATCH, deadline=deadline
        )
        SummaryTask.objects.filter(pk__in=task_ids, state=TaskState.PENDING).update(
            state=TaskState.RUNNING,
            in_batch=True,
            phase=steps.NEXT_GENERATE,
            lease_until=lease,
            started_at=timezone.now(),
        )


# --- the driver -------------------------------------------------------------------------------


def job_batch_advance(
    *, job_id: int, batch_size: int | None = None, batch_ids: Sequence[int] | None = None
) -> dict[str, int]:
    """One step of a batch-mode job (see the module docstring). Idempotent and safe to call
    from several workers at once: only the holder of the job's lease works.

    ``batch_size`` caps the requests of each new batch (None: the job's stored
    ``batch_size``, the operator's ``--batch-size``, else the limits alone). With
    ``batch_ids``, only those batch rows of the job are recovered, polled and collected and no
    new batch is written (the finished job is still finalized).

    Returns counts of what it did: recovered, polled, collected, submitted (batches), items,
    fallbacks (items sent to realtime), finalized (0/1), and ``unconfigured`` = 1 when this
    process cannot call the job's provider (its key is not set): then nothing at all is written
    (no lease, no batch or task row) and a warning is logged.
    """
    counts = dict.fromkeys(
        ("recovered", "polled", "collected", "submitted", "items", "fallbacks", "finalized"), 0
    )
    job = GenerationJob.objects.filter(pk=job_id).first()
    if job is None or job.mode != GenerationJob.Mode.BATCH:
        return counts
    if job.driver_lease_until is not None and job.driver_lease_until > timezone.now():
        return counts  # another driver works on it (checked again when taking the lease)
    try:
        provider = batch_provider_get(job.provider)
    except ProviderNotConfigured as exc:
        # a process that cannot reach the provider (no key here) leaves every row as it is:
        # the batches are paid for, and a process with the key collects them
        logger.warning(
            "job %s: batches left untouched, this process cannot call them: %s", job_id, exc
        )
        counts["unconfigured"] = 1
        return counts
    lease = DriverLease.take(job_id)
    if lease is None:
        return counts
    rows = ProviderBatch.objects.filter(job=job)
    if batch_ids is not None:
        rows = rows.filter(pk__in=list(batch_ids))
    try:
        if job.status == JobStatus.CANCELLED:
            _cancel_open(job, provider, lease)
        else:
            for batch in rows.filter(state=ProviderBatch.State.PREPARING).order_by("pk"):
                lease.renew()
                counts["recovered"] += _submit(batch, provider, job, lease, recovering=True)
            for batch in rows.filter(state__in=OPEN_STATES):
                lease.renew()
                counts["polled"] += 1
                _poll(batch, provider)
            for batch in rows.filter(
                state__in=[*_FINAL_FROM_PROVIDER.values(), ProviderBatch.State.TIMED_OUT]
            ):
                lease.renew()
                items, fallbacks = _collect(batch, provider, job, lease)
                counts["collected"] += 1
                counts["items"] += items
                counts["fallbacks"] += fallbacks
            if batch_ids is None:
                size = batch_size or job.batch_size
                identity = deployment_identity()
                for batch in _create_batches(job, provider, size, lease, identity):
                    counts["submitted"] += _submit(batch, provider, job, lease, recovering=False)
    except DriverLeaseLost as exc:
        # another driver took over (this one stalled longer than the lease): it carries on
        # from the database; this one stops without touching the job again
        logger.warning("%s; this driver stops", exc)
        return counts
    finally:
        lease.release()
    _progress(job)
    if steps.job_finalize(job_id=job_id):
        counts["finalized"] = 1
    return counts


def _cancel_open(job: GenerationJob, provider: BatchProvider, lease: DriverLease) -> None:
    for batch in ProviderBatch.objects.filter(job=job, state__in=OPEN_STATES):
        lease.renew()
        try:
            provider.batch_cancel(batch.provider_batch_id)
        except ProviderError as exc:
            logger.warning("cancelling %s failed: %s", batch.display_name, exc.message)
        ProviderBatch.objects.filter(pk=batch.pk).update(
            state=ProviderBatch.State.COLLECTED, finished_at=timezone.now(), error="job cancelled"
        )
    _fail_waiting(job, "job cancelled", state=TaskState.SKIPPED)


def _fail_waiting(job: GenerationJob, reason: str, *, state: str = TaskState.FAILED) -> None:
    SummaryTask.objects.filter(job=job, state=TaskState.RUNNING, in_batch=True).update(
        state=state, last_error=reason[:4000], finished_at=timezone.now(), lease_until=None
    )


# --- building and submitting ------------------------------------------------------------------


def _requests_of(
    batch: ProviderBatch, job: GenerationJob, lease: DriverLease
) -> Iterator[ProviderRequest[Any]]:
    """Rebuild the batch's requests from its items (deterministic for the task's saved state),
    renewing the driver's lease as it goes."""
    items = BatchItem.objects.filter(batch=batch).select_related(
        "task", "task__cluster", "task__cluster__run", "task__cluster__run__dataset"
    )
    for n, item in enumerate(items.iterator(chunk_size=LOAD_CHUNK)):
        if n % LOAD_CHUNK == 0:
            lease.renew()
        yield dataclasses.replace(_request_for(item.task, job, item.kind), custom_id=item.custom_id)


def _request_for(task: SummaryTask, job: GenerationJob, kind: str) -> ProviderRequest[Any]:
    ctx = cluster_context_build(cluster=task.cluster)
    if kind == LLMCall.Kind.GENERATE:
        return steps.generation_request(job=job, task=task, ctx=ctx)
    # A judge request carries every symbol of the dataset as metadata, for the extractive
    # judge only; batch providers send the prompts, never the metadata. Left out, a judge
    # request's size no longer grows with the dataset (10,000 requests x 100,000 symbols would
    # be gigabytes); the prompts and custom_id, and so the batch input, are unchanged.
    lean = dataclasses.replace(ctx, dataset_symbols=frozenset())
    return steps.judge_request(
        job=job, task=task, ctx=lean, summary=steps.draft_summary(task=task, ctx=ctx)
    )


def _chunk_limits(provider: BatchProvider, batch_size: int | None) -> tuple[int, int]:
    count = min(provider.max_requests_per_batch, settings.BATCH_MAX_REQUESTS_PER_BATCH)
    if batch_size:
        count = min(count, batch_size)
    return max(1, count), provider.max_bytes_per_batch


def _create_batches(
    job: GenerationJob,
    provider: BatchProvider,
    batch_size: int | None,
    lease: DriverLease,
    identity: str | None = None,
) -> list[ProviderBatch]:
    """Write batch rows (state preparing) and their items for every waiting task, before any
    provider call. A task waits when it is running in a phase and has no pending item. Display
    names and custom ids carry the deployment ``identity``.

    Tasks are loaded ``LOAD_CHUNK`` at a time; only (task id, attempt, custom_id, bytes) is kept
    per request until the rows are written.
    """
    waiting = (
        SummaryTask.objects.filter(job=job, state=TaskState.RUNNING, in_batch=True)
        .exclude(phase="")
        .exclude(batch_items__state=BatchItem.State.PENDING)
    )
    identity = identity or deployment_identity()
    max_count, max_bytes = _chunk_limits(provider, batch_size)
    created: list[ProviderBatch] = []
    for kind in (steps.NEXT_GENERATE, steps.NEXT_JUDGE):
        task_ids = list(waiting.filter(phase=kind).order_by("pk").values_list("pk", flat=True))
        if not task_ids:
            continue
        # requests are built outside any transaction, so the lease renewals between chunks are
        # committed (seen by other drivers) and the job row is not held locked meanwhile
        sized: list[tuple[int, int, str, int]] = []
        for start in range(0, len(task_ids), LOAD_CHUNK):
            lease.renew()
            tasks = (
                waiting.filter(phase=kind, pk__in=task_ids[start : start + LOAD_CHUNK])
                .select_related("cluster", "cluster__run", "cluster__run__dataset")
                .order_by("pk")
            )
            for task in tasks:
                if kind == steps.NEXT_GENERATE:
                    if task.attempts >= settings.LLM_MAX_ATTEMPTS:
                        steps.attempts_exhausted(
                            task=task, ctx=cluster_context_build(cluster=task.cluster)
                        )
                        continue
                    task.attempts += 1  # written below, with the batch rows
                request = _request_for(task, job, kind)
                request = dataclasses.replace(
                    request, custom_id=scoped_custom_id(identity, request.custom_id)
                )
                sized.append(
                    (
                        task.pk,
                        task.attempts,
                        request.custom_id,
                        provider.batch_request_bytes(request),
                    )
                )
        if not sized:
            continue
        lease.renew(force=True)  # the short transaction below starts with a full lease
        with transaction.atomic():
            if kind == steps.NEXT_GENERATE:
                ids = [task_id for task_id, *_ in sized]
                for at in range(0, len(ids), 2000):
                    SummaryTask.objects.filter(pk__in=ids[at : at + 2000]).update(
                        attempts=F("attempts") + 1
                    )
            last_round = ProviderBatch.objects.filter(job=job, kind=kind).aggregate(r=Max("round"))[
                "r"
            ]
            round_no = (last_round or 0) + 1
            for index, chunk in enumerate(_chunks(sized, max_count, max_bytes)):
                name = batch_display_name(identity, job.pk, kind, round_no, index)
                created.append(_write_batch(job, kind, round_no, index, chunk, name))
    return created


def _chunks(
    sized: list[tuple[int, int, str, int]], max_count: int, max_bytes: int
) -> Iterator[list[tuple[int, int, str]]]:
    """Split (task id, attempt, custom_id, bytes) into chunks of at most ``max_count`` items and
    ``max_bytes`` bytes (a single oversized item still gets its own chunk)."""
    chunk: list[tuple[int, int, str]] = []
    size = 0
    for task_id, attempt, custom_id, nbytes in sized:
        if chunk and (len(chunk) >= max_count or size + nbytes > max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append((task_id, attempt, custom_id))
        size += nbytes
    if chunk:
        yield chunk


def _write_batch(
    job: GenerationJob,
    kind: str,
    round_no: int,
    chunk_index: int,
    chunk: list[tuple[int, int, str]],
    display_name: str,
) -> ProviderBatch:
    batch = ProviderBatch.objects.create(
        job=job,
        provider=job.provider,
        model=job.model if kind == steps.NEXT_GENERATE else job.judge_model,
        kind=kind,
        round=round_no,
        chunk_index=chunk_index,
        display_name=display_name,
        request_count=len(chunk),
    )
    for start in range(0, len(chunk), 2000):  # a slice of model instances at a time
        BatchItem.objects.bulk_create(
            [
                BatchItem(
                    batch=batch, task_id=task_id, custom_id=custom_id, kind=kind, attempt=attempt
                )
                for task_id, attempt, custom_id in chunk[start : start + 2000]
            ]
        )
    return batch


def _adopt(batch: ProviderBatch, found: BatchStatus) -> None:
    """Record ``found`` (the provider's batch with the row's display name) as the row's batch,
    unless the row was submitted meanwhile."""
    ProviderBatch.objects.filter(pk=batch.pk, state=ProviderBatch.State.PREPARING).update(
        provider_batch_id=found.batch_id,
        state=ProviderBatch.State.SUBMITTED,
        provider_state=found.raw_state,
        submitted_at=batch.submitted_at or timezone.now(),
    )


def _submit(
    batch: ProviderBatch,
    provider: BatchProvider,
    job: GenerationJob,
    lease: DriverLease,
    *,
    recovering: bool,
) -> int:
    """Submit a preparing batch exactly once; returns 1 when this call submitted or adopted it.

    ``submit_attempts`` and ``submit_started_at`` are committed before the provider is called
    (a conditional update, so two drivers never both call): a batch with attempts > 0 and no id
    may have reached the provider, so it is looked up by display name first, and not submitted
    again while the last attempt may still be under way (:func:`_submit_grace`). The id is
    stored only if no other driver stored one meanwhile; a duplicate is cancelled.
    """
    batch.refresh_from_db()
    if batch.state != ProviderBatch.State.PREPARING:
        return 0
    if recovering and batch.submit_attempts == 0:
        age = (timezone.now() - batch.created_at).total_seconds()
        if age < PREPARING_GRACE_SECONDS and not batch.items.exists():
            return 0  # still being written by another driver
        if split_must_wait(batch):
            return 0  # half of a refused batch: after the model's open batches end
    if batch.submit_attempts > 0:
        try:
            found = _find_submitted(batch, provider)
        except ProviderError as exc:
            logger.warning("looking up %s failed: %s", batch.display_name, exc.message)
            return 0  # try again at the next tick; never resubmit blindly
        if found is not None:
            _adopt(batch, found)
            logger.info("adopted %s as %s after a crash", batch.display_name, found.batch_id)
            return 1
        started = batch.submit_started_at
        if started is not None and (timezone.now() - started).total_seconds() < _submit_grace():
            # an earlier attempt (a driver that stalled or died mid-call) may still reach the
            # provider: look again at the next tick rather than risk paying twice
            return 0
    requests = list(_requests_of(batch, job, lease))
    lease.renew(force=True)  # the provider call starts with a full lease
    claimed = ProviderBatch.objects.filter(
        pk=batch.pk, state=ProviderBatch.State.PREPARING, submit_attempts=batch.submit_attempts
    ).update(submit_attempts=F("submit_attempts") + 1, submit_started_at=timezone.now())
    if not claimed:
        return 0  # another driver submitted, adopted or attempted it meanwhile
    try:
        created = provider.batch_create(requests, display_name=batch.display_name)
    except ProviderError as exc:
        if exc.transient:
            if exc.status_code is not None:
                # the provider answered, so this attempt is over (batch_find at the next tick
                # still catches a batch created despite the error)
                ProviderBatch.objects.filter(pk=batch.pk).update(submit_started_at=None)
            logger.warning("submitting %s failed, will retry: %s", batch.display_name, exc.message)
            return 0
        ProviderBatch.objects.filter(pk=batch.pk).update(
            state=ProviderBatch.State.FAILED,
            error=redact(exc.message)[:4000],
            finished_at=timezone.now(),
        )
        return 0
    batch_id = created.batch_id
    stored = ProviderBatch.objects.filter(
        pk=batch.pk, state=ProviderBatch.State.PREPARING, provider_batch_id=""
    ).update(
        provider_batch_id=batch_id,
        state=ProviderBatch.State.SUBMITTED,
        submitted_at=timezone.now(),
        provider_state=created.raw_state,  # shown by `llm_batch list` before the first poll
    )
    if not stored:
        current = ProviderBatch.objects.values_list("provider_batch_id", flat=True).get(pk=batch.pk)
        if current == batch_id:
            return 0  # another driver found this very batch by its name and adopted it
        # another driver submitted this batch again while this call was under way: ours is a
        # duplicate, cancelled so it is not paid for
        logger.error(
            "%s was submitted twice; cancelling the duplicate %s", batch.display_name, batch_id
        )
        try:
            provider.batch_cancel(batch_id)
        except ProviderError as exc:
            logger.error("cancelling duplicate %s failed: %s", batch_id, redact(exc.message))
        return 0
    return 1


def _find_submitted(batch: ProviderBatch, provider: BatchProvider) -> BatchStatus | None:
    """The provider's batch submitted for ``batch`` by an attempt whose answer was lost: same
    display name (which carries the deployment identity), same request count, created after the
    row was written (less :data:`CLOCK_SKEW_SECONDS`), and not a batch another row of ours holds.

    Raises:
        ProviderError: the provider cannot tell now (transport failure; Anthropic: an
            in-progress batch that may be this one).
    """
    created_after = batch.created_at - timedelta(seconds=CLOCK_SKEW_SECONDS)
    known = set(
        ProviderBatch.objects.filter(
            provider=batch.provider, created_at__gte=created_after - timedelta(days=1)
        )
        .exclude(pk=batch.pk)
        .exclude(provider_batch_id="")
        .values_list("provider_batch_id", flat=True)
    )
    return provider.batch_find(
        batch.display_name,
        request_count=batch.request_count,
        created_after=created_after,
        exclude_ids=known,
    )


def _submit_grace() -> float:
    """Seconds after an attempt's start during which it may still reach the provider: upload
    and create, each bounded by ``LLM_TIMEOUT``, plus a margin."""
    return 3 * float(settings.LLM_TIMEOUT) + 60


# --- polling and collecting -------------------------------------------------------------------


def _poll(batch: ProviderBatch, provider: BatchProvider) -> None:
    now = timezone.now()
    try:
        status = provider.batch_get(batch.provider_batch_id)
    except ProviderError as exc:
        ProviderBatch.objects.filter(pk=batch.pk).update(
            poll_count=batch.poll_count + 1, last_polled_at=now, error=redact(exc.message)[:4000]
        )
        return
    update: dict[str, Any] = {
        "poll_count": batch.poll_count + 1,
        "last_polled_at": now,
        "provider_state": status.raw_state,
        "completed_count": status.completed,
        "failed_count": status.failed,
        "error": status.error[:4000],
        "error_code": status.error_code[:64],
    }
    final = _FINAL_FROM_PROVIDER.get(status.state)
    if final is not None:
        update["state"] = final
        update["finished_at"] = now
    elif status.state == "running":
        update["state"] = ProviderBatch.State.RUNNING
    started = batch.submitted_at or batch.created_at
    window = batch_timeout(batch.provider)
    if final is None and (now - started).total_seconds() > window:
        try:
            provider.batch_cancel(batch.provider_batch_id)
        except ProviderError as exc:
            logger.warning("cancelling timed-out %s failed: %s", batch.display_name, exc.message)
        update["state"] = ProviderBatch.State.TIMED_OUT
        update["finished_at"] = now
        update["error"] = f"no result within {timeout_setting(batch.provider)} ({window} s)"
    ProviderBatch.objects.filter(pk=batch.pk).update(**update)
