"""A batch refused for the provider's enqueued-token limit is split in two and retried in batch.

OpenAI limits the tokens a organisation may have enqueued per model across its open batches; a
batch over it is created, then fails with ``errors`` code ``token_limit_exceeded`` and runs
nothing. Redoing all its requests in realtime would pay the full price instead of the batch
price, so :func:`split_refused` halves it instead: two new ``preparing`` rows
(``<name>-s1``, ``<name>-s2``) take over its items, and the batch driver submits them one at a
time (:func:`split_must_wait`: a split batch waits while another batch of the same model is
open, since those hold the enqueued tokens). A refused batch of a single request goes to
realtime as before.
"""

from __future__ import annotations

import re

from django.db import transaction
from django.utils import timezone

from llm.models import BatchItem, ProviderBatch

#: the provider's error code of a batch refused for the enqueued-token limit (OpenAI)
TOKEN_LIMIT_CODE = "token_limit_exceeded"
_SPLIT_RE = re.compile(r"-s\d+$")


def is_refused_for_tokens(batch: ProviderBatch) -> bool:
    """Whether ``batch`` failed for the enqueued-token limit (and so ran nothing)."""
    return batch.state == ProviderBatch.State.FAILED and batch.error_code == TOKEN_LIMIT_CODE


def split_refused(batch: ProviderBatch) -> list[ProviderBatch]:
    """Move the pending items of a refused ``batch`` into two new preparing batches (halves, in
    item order) and mark it collected; returns the new rows ([] when it has fewer than two
    pending items: those go to realtime)."""
    items = list(
        BatchItem.objects.filter(batch=batch, state=BatchItem.State.PENDING)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    if len(items) < 2:
        return []
    half = len(items) // 2
    created = []
    with transaction.atomic():
        for number, part in enumerate((items[:half], items[half:]), 1):
            row = ProviderBatch.objects.create(
                job_id=batch.job_id,
                provider=batch.provider,
                model=batch.model,
                kind=batch.kind,
                round=batch.round,
                chunk_index=batch.chunk_index,
                display_name=f"{batch.display_name}-s{number}",
                request_count=len(part),
            )
            BatchItem.objects.filter(pk__in=part).update(batch=row)
            created.append(row)
        names = " and ".join(row.display_name for row in created)
        ProviderBatch.objects.filter(pk=batch.pk).update(
            state=ProviderBatch.State.COLLECTED,
            collected_at=timezone.now(),
            error=f"{batch.error}; split into {names}, retried in batch"[:4000],
        )
    return created


def split_must_wait(batch: ProviderBatch) -> bool:
    """Whether a split batch not yet submitted must wait: another batch of the same provider
    and model is open (it holds enqueued tokens the split batch would be refused for)."""
    if batch.submit_attempts or not _SPLIT_RE.search(batch.display_name):
        return False
    return (
        ProviderBatch.objects.filter(
            provider=batch.provider,
            model=batch.model,
            state__in=[ProviderBatch.State.SUBMITTED, ProviderBatch.State.RUNNING],
        )
        .exclude(pk=batch.pk)
        .exists()
    )
