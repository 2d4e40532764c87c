"""A process without the provider's key leaves batch work alone; results are stored later.

`llm_batch fetch --all-pending` and beat's `llm.poll_batches` in a process where the key is unset
change no row (full dumps compared) and say so (exit 2 with one line naming the variable; a
warning for beat). A process with the key, started afresh ("after a restart": new provider
clients, nothing remembered in memory), then collects the paid batch and stores its results.
Against the OpenAI emulator with the real SDK and PostgreSQL.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import redis
from django.apps import apps
from django.conf import settings as django_settings

from clustering.models import ClusteringRun
from llm.batch_tasks import advance_batch_job, poll_batches
from llm.models import ClusterSummary, GenerationJob, LLMCall, ProviderBatch
from llm.providers import registry
from llm.services.batch_admin import batch_job_create
from tests.llm.batch_helpers import planted_run, wait_final
from tests.llm.management.test_llm_batch_command import run_cmd

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def three(tmp_path: Path) -> ClusteringRun:
    return planted_run(tmp_path, "three")


def _dump() -> dict[str, list[dict[str, Any]]]:
    """Every row of the llm and clustering apps, field by field."""
    return {
        model._meta.label: list(model._default_manager.order_by("pk").values())
        for app in ("llm", "clustering")
        for model in apps.get_app_config(app).get_models()
    }


def _restart() -> None:
    """What a new process starts with: no provider client built yet."""
    registry._instances.clear()


def test_a_keyless_process_changes_nothing_and_a_later_one_stores_the_results(
    emu, three, settings, caplog: pytest.LogCaptureFixture
) -> None:
    emu.configure_batches(polls=2)  # open when the keyless process looks at it
    job = batch_job_create(dataset="three").job
    [batch] = ProviderBatch.objects.filter(job=job)
    assert batch.state == ProviderBatch.State.SUBMITTED

    settings.OPENAI_API_KEY = ""
    _restart()
    before, calls = _dump(), len(emu.api_log())
    code, out, err = run_cmd("fetch", "--all-pending")
    assert code == 2 and out == ""
    [line] = err.strip().splitlines()
    assert line.startswith("error: job ") and "OPENAI_API_KEY is not set" in line
    assert "no batch or task was changed" in line
    code, _, err = run_cmd("fetch", "--ids", str(batch.pk))
    assert code == 2 and "OPENAI_API_KEY" in err
    with caplog.at_level(logging.WARNING, logger="llm.services.batches"):
        # beat's poller sends one advance per open job; the keyless worker that runs it
        broker = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
        broker.delete("default")
        assert poll_batches() == 1
        assert broker.llen("default") == 1
        broker.delete("default")
        advance_batch_job.apply(args=(job.pk,)).get()
    assert any(
        "batches left untouched" in r.getMessage() and "OPENAI_API_KEY" in r.getMessage()
        for r in caplog.records
    )
    assert _dump() == before
    assert len(emu.api_log()) == calls  # the provider was never called

    # the results arrive while no keyed process runs; one starts later and stores them
    emu.finish_batches(batch.provider_batch_id)
    settings.OPENAI_API_KEY = "test-key-not-secret"
    _restart()
    code, out, err = run_cmd("fetch", "--all-pending")
    assert code == 0, err
    batch.refresh_from_db()
    assert batch.state == ProviderBatch.State.COLLECTED
    assert LLMCall.objects.filter(batch=batch, status="success").count() == 3
    final = wait_final(GenerationJob.objects.get(pk=job.pk))
    assert (final.status, final.succeeded, final.failed) == ("succeeded", 3, 0)
    assert ClusterSummary.objects.filter(is_current=True).count() == 3
    assert emu.request_log() == []  # nothing redone in realtime
