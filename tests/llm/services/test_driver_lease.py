"""The batch driver's lease on a job: one owner at a time, renewed while it works, released only
by its owner, and lost (``DriverLeaseLost``) once another driver took an expired lease."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from llm.models import GenerationJob
from llm.services.batches import DriverLease, DriverLeaseLost, job_batch_advance
from tests.support.world import build_world

pytestmark = pytest.mark.django_db


def _expiry(job_id: int) -> tuple[datetime | None, str]:
    return GenerationJob.objects.values_list("driver_lease_until", "driver_lease_owner").get(
        pk=job_id
    )


def _until(job_id: int) -> datetime:
    until = _expiry(job_id)[0]
    assert until is not None, "no lease on the job"
    return until


def test_one_driver_at_a_time_and_release_frees_the_job(settings) -> None:
    settings.BATCH_DRIVER_LEASE_SECONDS = 120
    job = build_world().job
    before = timezone.now()
    first = DriverLease.take(job.pk)
    assert first is not None
    until, owner = _until(job.pk), _expiry(job.pk)[1]
    assert owner == first.owner and len(owner) == 32
    assert before + timedelta(seconds=119) < until < timezone.now() + timedelta(seconds=121)
    assert DriverLease.take(job.pk) is None  # live lease: the second driver backs off
    first.release()
    assert _expiry(job.pk) == (None, "")
    second = DriverLease.take(job.pk)
    assert second is not None and second.owner != first.owner


def test_renew_extends_the_lease_and_is_throttled(settings) -> None:
    settings.BATCH_DRIVER_LEASE_SECONDS = 40
    job = build_world().job
    lease = DriverLease.take(job.pk)
    assert lease is not None
    GenerationJob.objects.filter(pk=job.pk).update(
        driver_lease_until=timezone.now() + timedelta(seconds=5)
    )
    lease.renew()  # renewed a moment ago (taken): nothing written
    assert _until(job.pk) < timezone.now() + timedelta(seconds=6)
    lease.renew(force=True)
    assert _until(job.pk) > timezone.now() + timedelta(seconds=35)


def test_an_expired_lease_taken_over_is_lost_and_not_released_by_its_old_owner() -> None:
    job = build_world().job
    stalled = DriverLease.take(job.pk)
    assert stalled is not None
    GenerationJob.objects.filter(pk=job.pk).update(
        driver_lease_until=timezone.now() - timedelta(seconds=1)
    )  # the first driver stalled longer than its lease
    successor = DriverLease.take(job.pk)
    assert successor is not None
    with pytest.raises(DriverLeaseLost, match=f"job {job.pk}: another driver took"):
        stalled.renew(force=True)
    stalled.release()
    assert _expiry(job.pk)[1] == successor.owner  # the successor keeps its lease
    # a third driver (the poller's next tick) finds the lease live and does nothing
    GenerationJob.objects.filter(pk=job.pk).update(mode=GenerationJob.Mode.BATCH)
    assert not any(job_batch_advance(job_id=job.pk).values())
    assert _expiry(job.pk)[1] == successor.owner
