"""The batch driver never pays twice and never works on a job it no longer owns, against the
OpenAI emulator with the real ``openai`` SDK and PostgreSQL:

- a driver whose lease was taken over (it stalled longer than ``BATCH_DRIVER_LEASE_SECONDS``)
  stops at its next renewal, mid-collection, and the successor finishes the job without
  recording any result twice;
- a submission attempt that may still be under way (started less than the grace ago) is not
  repeated when the provider does not know the batch yet; after the grace it is;
- a submission whose batch another driver stored meanwhile is cancelled at the provider when it
  is a second batch, and left alone when it is the very batch the other driver adopted.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from clustering.models import ClusteringRun
from llm.emulators.openai import OpenAIEmulator
from llm.models import BatchItem, GenerationJob, JobStatus, LLMCall, ProviderBatch
from llm.providers.registry import batch_provider_get
from llm.services import batch_collect, batch_lease, batches
from llm.services.batch_admin import batch_job_create
from llm.services.batches import DriverLease, job_batch_advance
from tests.llm.batch_helpers import planted_run, wait_final
from tests.support.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

GROUPS = 4


@pytest.fixture
def run(tmp_path: Path) -> ClusteringRun:
    done = planted_run(tmp_path, "four", groups=GROUPS)
    assert done.clusters.count() == GROUPS
    return done


def _accepted(emu: OpenAIEmulator, tag: str | None = None) -> list[str]:
    """Ids of the batches the provider created (with display name ``tag``, if given)."""
    return [
        s["batch_id"]
        for s in emu.batch_submissions()
        if s["accepted"] and (tag is None or s["tag"] == tag)
    ]


def test_a_driver_whose_lease_was_taken_stops_and_the_successor_finishes(
    emu, run, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = batch_job_create(dataset="four", provider="openai").job
    [generation] = ProviderBatch.objects.filter(job=job)
    emu.finish_batches()
    monkeypatch.setattr(batch_lease, "RENEW_FRACTION", 0.0)  # renew at every step
    monkeypatch.setattr(batch_collect, "LOAD_CHUNK", 1)  # one result per step
    real_process = batch_collect._process_item
    successor: list[str] = []

    def then_stall(*args: Any, **kwargs: Any) -> int:
        sent = real_process(*args, **kwargs)
        if not successor:  # this driver now stalls past its lease, and another takes the job
            GenerationJob.objects.filter(pk=job.pk).update(
                driver_lease_until=timezone.now() - timedelta(seconds=1)
            )
            lease = DriverLease.take(job.pk)
            assert lease is not None
            successor.append(lease.owner)
        return sent

    monkeypatch.setattr(batch_collect, "_process_item", then_stall)
    counts = job_batch_advance(job_id=job.pk)
    assert counts["collected"] == 0 and counts["finalized"] == 0
    states = list(BatchItem.objects.filter(batch=generation).values_list("state", flat=True))
    assert sorted(states).count(BatchItem.State.PENDING) == GROUPS - 1  # stopped after one
    generation.refresh_from_db()
    assert generation.state == ProviderBatch.State.SUCCEEDED  # not marked collected
    owner = GenerationJob.objects.values_list("driver_lease_owner", flat=True).get(pk=job.pk)
    assert owner == successor[0]  # the stopped driver did not release the successor's lease

    monkeypatch.setattr(batch_collect, "_process_item", real_process)
    DriverLease(job.pk, successor[0]).release()  # the successor's own step ends
    job = wait_final(job)
    assert (job.status, job.succeeded) == (JobStatus.SUCCEEDED, GROUPS)
    generation.refresh_from_db()
    assert "unknown custom_id" not in generation.error  # the first driver's result is known
    generated = LLMCall.objects.filter(job=job, kind="generate")
    assert generated.count() == GROUPS  # no result recorded twice
    assert len(set(generated.values_list("task_id", flat=True))) == GROUPS
    assert len(_accepted(emu)) == 2  # one generation and one judge batch


def _preparing(job: GenerationJob) -> ProviderBatch:
    provider = batch_provider_get("openai")
    lease = DriverLease.take(job.pk)
    assert lease is not None
    try:
        [batch] = batches._create_batches(job, provider, None, lease)
    finally:
        lease.release()
    return batch


def test_an_attempt_that_may_still_be_under_way_is_not_repeated_until_the_grace_ends(
    emu, run
) -> None:
    job = batch_job_create(dataset="four", provider="openai", submit=False).job
    batch = _preparing(job)
    # a driver started submitting and stalled before its request reached the provider
    started = timezone.now()
    ProviderBatch.objects.filter(pk=batch.pk).update(submit_attempts=1, submit_started_at=started)
    assert job_batch_advance(job_id=job.pk)["recovered"] == 0
    assert _accepted(emu) == []
    batch.refresh_from_db()
    assert (batch.state, batch.submit_attempts) == (ProviderBatch.State.PREPARING, 1)

    grace = batches._submit_grace()
    ProviderBatch.objects.filter(pk=batch.pk).update(
        submit_started_at=started - timedelta(seconds=grace + 1)
    )
    assert job_batch_advance(job_id=job.pk)["recovered"] == 1
    batch.refresh_from_db()
    assert _accepted(emu, batch.display_name) == [
        batch.provider_batch_id
    ]  # submitted once, after the grace
    assert batch.submit_attempts == 2 and batch.state != ProviderBatch.State.PREPARING


@pytest.mark.parametrize("other", ["same", "second"])
def test_a_batch_stored_by_another_driver_during_the_call_is_never_paid_twice(
    emu, run, other: str
) -> None:
    job = batch_job_create(dataset="four", provider="openai", submit=False).job
    batch = _preparing(job)
    emu.add_batch_fault("timeout", op="create", seconds=1.5)  # created, answered late

    def other_driver() -> None:
        try:
            [created] = wait_until(
                lambda: _accepted(emu), 30.0, "the batch created at the provider", interval=0.02
            )
            stored = created if other == "same" else "batch_other"  # adopted, or its own
            ProviderBatch.objects.filter(pk=batch.pk).update(
                provider_batch_id=stored, state=ProviderBatch.State.SUBMITTED
            )
        finally:
            connection.close()

    thread = threading.Thread(target=other_driver)
    thread.start()
    counts = job_batch_advance(job_id=job.pk)
    thread.join(15)
    [created] = _accepted(emu, batch.display_name)
    batch.refresh_from_db()
    assert counts["recovered"] == 0 and batch.submit_attempts == 1
    if other == "same":
        assert batch.provider_batch_id == created
        assert emu.batch(created).cancel_requested is None  # the adopted batch runs on
    else:
        assert batch.provider_batch_id == "batch_other"
        assert emu.batch(created).cancel_requested is not None  # the duplicate is cancelled
