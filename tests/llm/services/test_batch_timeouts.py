"""Per-provider batch timeouts: each provider's documented window by default (Gemini 48 h,
OpenAI and Anthropic 24 h), ``BATCH_TIMEOUT_<PROVIDER>`` per provider, ``BATCH_TIMEOUT`` for all.

A batch open longer than its provider's window is cancelled at the provider, marked timed out and
its items handed to realtime; one within it is polled on. Against the three emulators with the
real SDKs (the ``vendor`` fixture) and PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from clustering.models import ClusteringRun
from llm.models import BatchItem, ProviderBatch
from llm.services.batch_admin import batch_job_create
from llm.services.batches import batch_timeout, job_batch_advance
from tests.llm.batch_helpers import planted_run

pytestmark = pytest.mark.django_db(transaction=True)

HOUR = 3600
OPEN = (ProviderBatch.State.SUBMITTED, ProviderBatch.State.RUNNING)


@pytest.fixture
def run(tmp_path: Path) -> ClusteringRun:
    return planted_run(tmp_path, "three")


def test_defaults_are_the_providers_windows_and_settings_override_them(settings) -> None:
    settings.BATCH_TIMEOUT = None
    assert {p: batch_timeout(p) for p in ("gemini", "openai", "anthropic")} == {
        "gemini": 48 * HOUR,
        "openai": 24 * HOUR,
        "anthropic": 24 * HOUR,
    }
    settings.BATCH_TIMEOUT_GEMINI = 5 * HOUR
    assert (batch_timeout("gemini"), batch_timeout("openai")) == (5 * HOUR, 24 * HOUR)
    settings.BATCH_TIMEOUT = 600  # the global override wins
    assert {batch_timeout(p) for p in ("gemini", "openai", "anthropic")} == {600}


def _age(batch: ProviderBatch, hours: float) -> None:
    """Make ``batch`` look submitted ``hours`` ago."""
    ProviderBatch.objects.filter(pk=batch.pk).update(
        submitted_at=timezone.now() - timedelta(hours=hours)
    )


def test_an_expired_batch_is_handled_by_its_providers_window(vendor, run, settings) -> None:
    settings.BATCH_TIMEOUT = None
    vendor.configure_batches(polls=10_000)  # the provider never finishes it by itself
    job = batch_job_create(dataset="three").job
    [batch] = ProviderBatch.objects.filter(job=job)
    window_hours = batch_timeout(job.provider) / HOUR

    _age(batch, 30)  # past 24 h, within Gemini's 48 h
    job_batch_advance(job_id=job.pk)
    batch.refresh_from_db()
    if job.provider == "gemini":
        assert window_hours == 48 and batch.state in OPEN
        _age(batch, 49)
        job_batch_advance(job_id=job.pk)
        batch.refresh_from_db()
    else:
        assert window_hours == 24
    setting = f"BATCH_TIMEOUT_{job.provider.upper()}"
    assert batch.state in (ProviderBatch.State.TIMED_OUT, ProviderBatch.State.COLLECTED)
    assert f"no result within {setting} ({int(window_hours * HOUR)} s)" in batch.error
    assert vendor.batch(batch.provider_batch_id).cancel_requested is not None
    if batch.state == ProviderBatch.State.TIMED_OUT:
        job_batch_advance(job_id=job.pk)
        batch.refresh_from_db()
    assert batch.state == ProviderBatch.State.COLLECTED
    # every item goes to realtime (OpenAI reports them cancelled, the others report nothing)
    states = list(BatchItem.objects.filter(batch=batch).values_list("state", flat=True))
    assert states == ["fallback"] * 3
    assert not job.tasks.filter(in_batch=True).exists()
