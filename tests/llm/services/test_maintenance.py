"""The maintenance beat schedules: registered idempotently, their intervals follow the settings
on every start (migrate, ``setup_maintenance``, beat), ``enabled`` stays the admin's, and the
batch poller fans out one message per open job."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
import redis
from celery.signals import beat_init
from django.conf import settings as django_settings
from django.core.management import call_command
from django_celery_beat.models import PeriodicTask

from clustering.services import clustering_run_create
from llm.batch_tasks import poll_batches
from llm.models import GenerationJob, JobStatus
from llm.services.maintenance import BATCH_POLL_SCHEDULE_NAME, maintenance_schedules_ensure
from llm.services.reconcile import RECONCILE_SCHEDULE_NAME
from tests.support.planted_runs import PARAMS, import_planted

pytestmark = pytest.mark.django_db


def _every(name: str) -> tuple[int, str, int | None]:
    row = PeriodicTask.objects.get(name=name)
    assert row.interval is not None
    return row.interval.every, row.interval.period, row.expire_seconds


def test_batch_poller_and_reconciler_are_scheduled(settings) -> None:
    PeriodicTask.objects.all().delete()
    settings.BATCH_POLL_INTERVAL = 45
    rows = maintenance_schedules_ensure()
    assert [state for _, state in rows] == ["registered", "registered"]
    poll = PeriodicTask.objects.get(name=BATCH_POLL_SCHEDULE_NAME)
    assert poll.task == "llm.poll_batches" and poll.queue == "default"
    assert _every(BATCH_POLL_SCHEDULE_NAME) == (45, "seconds", 90)
    assert PeriodicTask.objects.filter(task="llm.reconcile").count() == 1
    # a second registration changes nothing, a row disabled in the admin stays disabled
    poll.enabled = False
    poll.save()
    assert [state for _, state in maintenance_schedules_ensure()] == ["unchanged", "unchanged"]
    assert not PeriodicTask.objects.get(name=BATCH_POLL_SCHEDULE_NAME).enabled
    out = StringIO()
    call_command("setup_maintenance", stdout=out)
    assert "llm.poll_batches" in out.getvalue() and "disabled" in out.getvalue()


def test_a_changed_setting_moves_the_interval_and_keeps_enabled(settings) -> None:
    maintenance_schedules_ensure()
    PeriodicTask.objects.filter(name=BATCH_POLL_SCHEDULE_NAME).update(enabled=False)
    settings.BATCH_POLL_INTERVAL = 7
    settings.RECONCILE_INTERVAL_SECONDS = 11
    out = StringIO()
    call_command("setup_maintenance", stdout=out)
    assert out.getvalue().count("interval updated from the settings") == 2
    assert _every(BATCH_POLL_SCHEDULE_NAME) == (7, "seconds", 14)
    assert _every(RECONCILE_SCHEDULE_NAME) == (11, "seconds", 22)
    assert not PeriodicTask.objects.get(name=BATCH_POLL_SCHEDULE_NAME).enabled
    assert PeriodicTask.objects.get(name=RECONCILE_SCHEDULE_NAME).enabled
    assert PeriodicTask.objects.filter(task="llm.poll_batches").count() == 1


def test_beat_start_applies_the_settings(settings) -> None:
    """The ``beat_init`` receiver of config/celery.py runs the same registration, so a changed
    ``BATCH_POLL_INTERVAL`` takes effect on the next beat start, not only on ``migrate``."""
    maintenance_schedules_ensure()
    settings.BATCH_POLL_INTERVAL = 3
    beat_init.send(sender=None)
    assert _every(BATCH_POLL_SCHEDULE_NAME) == (3, "seconds", 6)


def test_poll_batches_sends_one_expiring_message_per_open_job(planted_csv: Path, settings) -> None:
    """Against the real broker: the poller publishes one ``llm.advance_batch_job`` per open
    batch-mode job to the ``default`` queue, expiring after two poll intervals; a realtime job
    and a finished batch job get none."""
    settings.BATCH_POLL_INTERVAL = 30
    run = clustering_run_create(dataset_slug=import_planted(planted_csv), params=PARAMS)
    common = {
        "run": run,
        "scope": GenerationJob.Scope.CLUSTERS,
        "provider": "gemini",
        "model": "m",
        "judge_model": "m",
    }
    open_jobs = [
        GenerationJob.objects.create(
            **common, mode=GenerationJob.Mode.BATCH, status=JobStatus.RUNNING
        )
        for _ in range(2)
    ]
    GenerationJob.objects.create(
        **common, mode=GenerationJob.Mode.REALTIME, status=JobStatus.RUNNING
    )
    GenerationJob.objects.create(
        **common, mode=GenerationJob.Mode.BATCH, status=JobStatus.SUCCEEDED
    )
    broker = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    broker.delete("default")

    assert poll_batches() == 2

    messages = [json.loads(raw) for raw in broker.lrange("default", 0, -1)]
    broker.delete("default")
    headers = [m["headers"] for m in messages]
    assert [h["task"] for h in headers] == ["llm.advance_batch_job"] * 2
    assert sorted(h["argsrepr"] for h in headers) == sorted(f"({j.pk},)" for j in open_jobs)
    assert all(h["expires"] for h in headers)
