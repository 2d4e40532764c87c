"""Beat schedules of the pipeline's maintenance tasks (django-celery-beat database scheduler)."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django_celery_beat.models import IntervalSchedule, PeriodicTask

BATCH_POLL_SCHEDULE_NAME = "poll provider batches"
BATCH_POLL_TASK = "llm.poll_batches"


def interval_task_ensure(
    *, name: str, task: str, every: int, description: str, using: str = "default"
) -> tuple[PeriodicTask, bool]:
    """Register ``task`` to run every ``every`` seconds on the ``default`` queue, idempotently:
    an existing row with that ``name`` is left as it is, so changes made in the admin (another
    interval, disabled) survive ``migrate``. A message older than two intervals expires instead of
    piling up while no worker runs. Returns the row and whether it was created."""
    with transaction.atomic(using=using):
        existing = PeriodicTask.objects.using(using).filter(name=name).first()
        if existing is not None:
            return existing, False
        interval = (
            IntervalSchedule.objects.using(using)
            .filter(every=every, period=IntervalSchedule.SECONDS)
            .order_by("pk")
            .first()
        )
        if interval is None:
            interval = IntervalSchedule(every=every, period=IntervalSchedule.SECONDS)
            interval.save(using=using)
        row = PeriodicTask(
            name=name,
            task=task,
            interval=interval,
            queue="default",
            expire_seconds=2 * every,
            description=description,
        )
        row.save(using=using)
    return row, True


def batch_poll_schedule_ensure(*, using: str = "default") -> tuple[PeriodicTask, bool]:
    """Register ``llm.poll_batches`` every ``BATCH_POLL_INTERVAL`` seconds: polling is driven
    from the database, so restarting every process resumes all open batches."""
    return interval_task_ensure(
        name=BATCH_POLL_SCHEDULE_NAME,
        task=BATCH_POLL_TASK,
        every=int(settings.BATCH_POLL_INTERVAL),
        description=(
            "Recovers, polls and collects open provider batches and submits the next ones "
            "(llm/services/batches.py)."
        ),
        using=using,
    )


def maintenance_schedules_ensure(*, using: str = "default") -> list[tuple[PeriodicTask, bool]]:
    """Register every maintenance schedule: the reconciler and the batch poller."""
    from llm.services.reconcile import reconcile_schedule_ensure

    return [reconcile_schedule_ensure(using=using), batch_poll_schedule_ensure(using=using)]
