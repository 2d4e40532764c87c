"""OpenAI: a batch refused for the per-model enqueued-token limit (``token_limit_exceeded``) is
split in halves and retried in batch, one half at a time, never redone in realtime at full price.
Against the OpenAI emulator (which refuses batches over ``enqueued_token_limit`` as OpenAI does)
with the real SDK and PostgreSQL.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from clustering.models import ClusteringRun
from llm.emulators.batches import estimated_tokens
from llm.models import BatchItem, LLMCall, ProviderBatch
from llm.services.batch_admin import batch_job_create
from llm.services.batches import job_batch_advance
from tests.llm.batch_helpers import planted_run, wait_final

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def three(tmp_path: Path) -> ClusteringRun:
    return planted_run(tmp_path, "three")


def test_a_batch_over_the_enqueued_token_limit_is_split_and_retried_in_batch(emu, three) -> None:
    job = batch_job_create(dataset="three").job
    [refused] = ProviderBatch.objects.filter(job=job)
    items = emu.batch(refused.provider_batch_id).items
    biggest = max(estimated_tokens(item) for item in items)
    # three requests do not fit, two do; judge requests are smaller still
    emu.configure_batches(enqueued_token_limit=2 * biggest + 10, polls=1)

    job_batch_advance(job_id=job.pk)  # the first poll: refused; then split
    refused.refresh_from_db()
    assert (refused.state, refused.error_code) == ("collected", "token_limit_exceeded")
    assert "Enqueued token limit reached" in refused.error and "split into" in refused.error
    halves = list(
        ProviderBatch.objects.filter(display_name__startswith=refused.display_name + "-s").order_by(
            "display_name"
        )
    )
    assert [(h.display_name[-3:], h.request_count) for h in halves] == [("-s1", 1), ("-s2", 2)]
    assert not BatchItem.objects.filter(batch=refused).exists()  # the items moved, none lost

    job_batch_advance(job_id=job.pk)  # the first half goes; the second waits for it
    first, second = (ProviderBatch.objects.get(pk=h.pk) for h in halves)
    assert first.state in ("submitted", "running") and first.provider_batch_id
    assert (second.state, second.submit_attempts) == ("preparing", 0)

    final = wait_final(job)
    assert (final.status, final.succeeded, final.failed) == ("succeeded", 3, 0)
    assert emu.request_log() == []  # nothing redone in realtime
    generated = LLMCall.objects.filter(job=job, kind="generate", status="success")
    assert generated.count() == 3 and all(c.batch_id for c in generated)
    accepted = [s for s in emu.batch_submissions() if s["accepted"] and "-generate-" in s["tag"]]
    assert [s["requests"] for s in accepted] == [3, 1, 2]  # the refused one, then its halves


def test_a_single_request_over_the_limit_goes_to_realtime(emu, three) -> None:
    """Splitting ends: a refused batch of one request cannot be split, so it is handed to the
    realtime path (the limit is below any one request here, so all three end there)."""
    emu.configure_batches(enqueued_token_limit=10)
    job = batch_job_create(dataset="three").job
    deadline = time.monotonic() + 60
    while job.tasks.filter(in_batch=True).exists() and time.monotonic() < deadline:
        job_batch_advance(job_id=job.pk)
        time.sleep(0.1)
    refused = ProviderBatch.objects.filter(job=job, error_code="token_limit_exceeded")
    assert sorted(refused.values_list("request_count", flat=True)) == [1, 1, 1, 2, 3]
    assert set(refused.values_list("state", flat=True)) == {"collected"}
    handed = job.tasks.filter(in_batch=False, state="pending", phase="generate")
    assert handed.count() == 3  # each queued once for a realtime call
    assert set(BatchItem.objects.filter(batch__job=job).values_list("state", flat=True)) == {
        "fallback"
    }
