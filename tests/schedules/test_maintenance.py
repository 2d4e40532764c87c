"""The maintenance beat schedules are registered idempotently."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django_celery_beat.models import PeriodicTask

from llm.services.maintenance import BATCH_POLL_SCHEDULE_NAME, maintenance_schedules_ensure

pytestmark = pytest.mark.django_db


def test_batch_poller_and_reconciler_are_scheduled(settings) -> None:
    PeriodicTask.objects.all().delete()
    settings.BATCH_POLL_INTERVAL = 45
    rows = maintenance_schedules_ensure()
    assert [created for _, created in rows] == [True, True]
    poll = PeriodicTask.objects.get(name=BATCH_POLL_SCHEDULE_NAME)
    assert poll.task == "llm.poll_batches" and poll.queue == "default"
    assert (poll.interval.every, poll.interval.period) == (45, "seconds")
    assert PeriodicTask.objects.filter(task="llm.reconcile").count() == 1
    # a second registration changes nothing, an edit made in the admin survives
    poll.enabled = False
    poll.save()
    assert [created for _, created in maintenance_schedules_ensure()] == [False, False]
    assert not PeriodicTask.objects.get(name=BATCH_POLL_SCHEDULE_NAME).enabled
    out = StringIO()
    call_command("setup_maintenance", stdout=out)
    assert "llm.poll_batches" in out.getvalue() and "disabled" in out.getvalue()
