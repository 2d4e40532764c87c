"""Collecting a finished batch: its results are streamed, matched by ``custom_id`` and fed into
the same validation, judge and cache steps as realtime; items without a usable answer go to the
realtime path (:func:`_fallback`); the job's progress line (:func:`_progress`). Used by the
driver in :mod:`llm.services.batches`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Count, F, Q, Sum
from django.utils import timezone
from pydantic import BaseModel

from llm.models import (
    TERMINAL_STATES,
    BatchItem,
    GenerationJob,
    LLMCall,
    ProviderBatch,
    SummaryTask,
    TaskState,
)
from llm.pricing import call_cost
from llm.providers.base import ProviderError, redact
from llm.providers.batch import BatchItemResult, BatchProvider
from llm.services import steps
from llm.services.batch_files import batch_files_delete
from llm.services.batch_lease import DriverLease, timeout_setting
from llm.services.batch_split import is_refused_for_tokens, split_refused
from llm.services.context import cluster_context_build
from llm.services.deployment import belongs_to, deployment_identity

logger = logging.getLogger(__name__)

#: tasks (with their clusters) or batch items held in memory at a time while building or
#: collecting a batch, so memory does not grow with the number of requests
LOAD_CHUNK = 500


def _items_by_pk(pks: Sequence[int]) -> dict[int, BatchItem]:
    """Batch items with everything their processing reads (task, job, cluster, run, dataset)."""
    return BatchItem.objects.select_related(
        "task", "task__job", "task__cluster", "task__cluster__run", "task__cluster__run__dataset"
    ).in_bulk(list(pks))


def _collect(
    batch: ProviderBatch, provider: BatchProvider, job: GenerationJob, lease: DriverLease
) -> tuple[int, int]:
    """Process a finished batch's results; hand every item without a usable answer to the
    realtime path. Returns (items processed, items sent to realtime).

    Memory does not grow with the batch beyond a small index (custom_id -> item id, output
    class): results are streamed and processed ``LOAD_CHUNK`` at a time, each chunk's items
    loaded with one query.
    """
    from llm.prompts.schemas import JudgeVerdict, summary_class_for

    if is_refused_for_tokens(batch) and split_refused(batch):
        logger.warning(
            "%s was refused for the enqueued-token limit; split in two, retried in batch",
            batch.display_name,
        )
        batch_files_delete(batch, provider)
        return 0, 0
    index: dict[str, int] = {}
    output_classes: dict[str, type[BaseModel]] = {}
    for custom_id, pk, kind, cluster_type in (
        BatchItem.objects.filter(batch=batch, state=BatchItem.State.PENDING)
        .values_list("custom_id", "pk", "kind", "task__cluster__run__cluster_type")
        .iterator(chunk_size=2000)
    ):
        index[custom_id] = pk
        output_classes[custom_id] = (
            JudgeVerdict if kind == LLMCall.Kind.JUDGE else summary_class_for(cluster_type)
        )
    processed = fallbacks = 0
    unknown: list[str] = []
    pending: list[tuple[int, BatchItemResult]] = []

    def process_pending() -> int:
        lease.renew()
        items = _items_by_pk([pk for pk, _ in pending])
        sent = sum(_process_item(batch, items[pk], result) for pk, result in pending)
        pending.clear()
        return sent

    can_have_results = batch.state != ProviderBatch.State.FAILED and bool(batch.provider_batch_id)
    with steps.progress_deferred():
        if can_have_results:
            try:
                for result in provider.batch_results(batch.provider_batch_id, output_classes):
                    found = index.pop(result.custom_id, None)
                    if found is None:
                        unknown.append(result.custom_id)
                        continue
                    pending.append((found, result))
                    processed += 1
                    if len(pending) >= LOAD_CHUNK:
                        fallbacks += process_pending()
            except ProviderError as exc:
                logger.warning("results of %s unavailable: %s", batch.display_name, exc.message)
            fallbacks += process_pending()
        # whatever is left had no result: expired, cancelled, failed batch or missing lines
        reason = {
            ProviderBatch.State.EXPIRED: "the batch expired before this item ran",
            ProviderBatch.State.CANCELLED: "the batch was cancelled before this item ran",
            ProviderBatch.State.TIMED_OUT: (
                f"the batch did not finish within {timeout_setting(batch.provider)}"
            ),
            ProviderBatch.State.FAILED: f"the batch failed: {batch.error or 'no reason given'}",
        }.get(ProviderBatch.State(batch.state), "the finished batch had no result for this item")
        left = sorted(index.values())
        for start in range(0, len(left), LOAD_CHUNK):
            lease.renew()
            for item in _items_by_pk(left[start : start + LOAD_CHUNK]).values():
                _fallback(item, reason, missing=batch.state == ProviderBatch.State.SUCCEEDED)
                fallbacks += 1
    if unknown:  # results of items processed by an earlier, interrupted collection are known
        known = set(
            BatchItem.objects.filter(batch=batch, custom_id__in=unknown).values_list(
                "custom_id", flat=True
            )
        )
        unknown = [custom_id for custom_id in unknown if custom_id not in known]
    note = f"{len(unknown)} result(s) with unknown custom_id: {', '.join(unknown[:5])}"
    if unknown:
        identity = deployment_identity()
        foreign = sum(1 for custom_id in unknown if not belongs_to(identity, custom_id))
        logger.warning(
            "%s: %d result(s) not stored, their custom_id is not one of this batch's items "
            "(%d not made by this deployment %s): %s",
            batch.display_name,
            len(unknown),
            foreign,
            identity,
            ", ".join(unknown[:5]),
        )
    ProviderBatch.objects.filter(pk=batch.pk).update(
        state=ProviderBatch.State.COLLECTED,
        collected_at=timezone.now(),
        unknown_results=F("unknown_results") + len(unknown),
        error=(batch.error + ("; " + note if unknown else ""))[:4000] if unknown else batch.error,
    )
    batch_files_delete(batch, provider)  # the results are stored: free the provider's storage
    return processed, fallbacks


def _record_item_call(batch: ProviderBatch, item: BatchItem, result: BatchItemResult) -> LLMCall:
    if result.result is not None:
        r = result.result
        status, tokens_in, tokens_out = LLMCall.Status.SUCCESS, r.input_tokens, r.output_tokens
        version, error_class, error_message = r.model_version, "", ""
    else:
        assert result.error is not None
        err = result.error
        status = {
            "timeout": LLMCall.Status.TIMEOUT,
            "blocked": LLMCall.Status.BLOCKED,
            "validation_failed": LLMCall.Status.VALIDATION_FAILED,
        }.get(err.kind, LLMCall.Status.API_ERROR)
        tokens_in, tokens_out, version = err.input_tokens, err.output_tokens, ""
        error_class = f"batch {err.kind}"
        error_message = redact(err.message)[:4000]
    return LLMCall.objects.create(
        job_id=batch.job_id,
        task=item.task,
        batch=batch,
        kind=item.kind,
        attempt=item.attempt,
        provider=batch.provider,
        model=batch.model,
        model_version=version,
        status=status,
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        cost_usd=call_cost(batch.model, tokens_in, tokens_out, batch=True),
        error_class=error_class,
        error_message=error_message,
    )


def _process_item(batch: ProviderBatch, item: BatchItem, result: BatchItemResult) -> int:
    """Feed one result into the shared steps; returns 1 when the item went to realtime."""
    task = item.task
    call = _record_item_call(batch, item, result)
    task.refresh_from_db()
    if task.state in TERMINAL_STATES or not task.in_batch:
        BatchItem.objects.filter(pk=item.pk).update(state=BatchItem.State.DONE)
        return 0
    error = result.error
    if error is not None and (
        item.kind == LLMCall.Kind.JUDGE or error.kind not in steps.RETRY_BY_REGENERATING
    ):
        _fallback(item, f"batch item failed: {call.error_message}")
        return 1
    ctx = cluster_context_build(cluster=task.cluster)
    if item.kind == LLMCall.Kind.GENERATE:
        steps.on_generation(
            task=task,
            ctx=ctx,
            parsed=result.result.parsed if result.result is not None else None,
            error_message=call.error_message,
            error_kind=error.kind if error is not None else "",
            call=call,
        )
    else:
        assert result.result is not None
        steps.on_judgement(task=task, ctx=ctx, verdict=result.result.parsed, error_message="")
    BatchItem.objects.filter(pk=item.pk).update(state=BatchItem.State.DONE)
    return 0


def _fallback(item: BatchItem, reason: str, *, missing: bool = False) -> None:
    """Hand one item's task to the realtime path, which resumes at the item's step. Every
    fallback is for a failure that was not the model's (API error, expiry, cancellation, missing
    result), so a generation item gives its attempt back."""
    from llm.tasks import summarise_cluster

    task = item.task
    BatchItem.objects.filter(pk=item.pk).update(
        state=BatchItem.State.MISSING if missing else BatchItem.State.FALLBACK, error=reason
    )
    update: dict[str, Any] = {
        "state": TaskState.PENDING,
        "in_batch": False,
        "lease_until": None,
        "last_error": f"{reason}; retried in realtime"[:4000],
    }
    if item.kind == LLMCall.Kind.GENERATE:
        update["phase"] = steps.NEXT_GENERATE
        update["attempts"] = max(0, item.attempt - 1)
    updated = SummaryTask.objects.filter(pk=task.pk, state=TaskState.RUNNING, in_batch=True).update(
        **update
    )
    if updated:
        transaction.on_commit(lambda: summarise_cluster.delay(task.pk))


def _progress(job: GenerationJob) -> None:
    """Submitted / completed / failed items, an estimate of the time left, cost so far and the
    projected cost of the whole job."""
    items = BatchItem.objects.filter(batch__job=job).aggregate(
        total=Count("id"),
        done=Count("id", filter=Q(state=BatchItem.State.DONE)),
        failed=Count("id", filter=~Q(state__in=[BatchItem.State.DONE, BatchItem.State.PENDING])),
    )
    tasks = SummaryTask.objects.filter(job=job).aggregate(
        total=Count("id"), done=Count("id", filter=Q(state__in=TERMINAL_STATES))
    )
    cost = LLMCall.objects.filter(job=job).aggregate(c=Sum("cost_usd"))["c"] or Decimal(0)
    projected = None
    if tasks["done"]:
        projected = (cost / tasks["done"] * tasks["total"]).quantize(Decimal("0.000001"))
    eta = ""
    first = ProviderBatch.objects.filter(job=job).order_by("created_at").first()
    if first is not None and 0 < tasks["done"] < tasks["total"]:
        elapsed = (timezone.now() - first.created_at).total_seconds()
        left = elapsed / tasks["done"] * (tasks["total"] - tasks["done"])
        eta = f", about {left / 60:.0f} min left"
    GenerationJob.objects.filter(pk=job.pk).update(
        progress_current=tasks["done"],
        progress_total=tasks["total"],
        progress_message=(
            f"Batch: {items['total']} items submitted, {items['done']} completed, "
            f"{items['failed']} failed; {tasks['done']}/{tasks['total']} clusters done{eta}"
        )[:300],
        cost_usd=cost,
        projected_cost_usd=projected,
    )
