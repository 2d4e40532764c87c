"""Beat schedules of the pipeline's maintenance tasks (django-celery-beat database scheduler)."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django_celery_beat.models import IntervalSchedule, PeriodicTask

BATCH_POLL_SCHEDULE_NAME = "poll provider batches"
BATCH_POLL_TASK = "llm.poll_batches"


def _interval_get(*, every: int, using: str) -> IntervalSchedule:
    """The oldest ``IntervalSchedule`` of ``every`` seconds, created if there is none."""
    interval = (
        IntervalSchedule.objects.using(using)
        .filter(every=every, period=IntervalSchedule.SECONDS)
        .order_by("pk")
        .first()
    )
    if interval is None:
        interval = IntervalSchedule(every=every, period=IntervalSchedule.SECONDS)
        interval.save(using=using)
    return interval


def interval_task_ensure(
    *, name: str, task: str, every: int, description: str, using: str = "default"
) -> tuple[PeriodicTask, str]:
    """Register ``task`` to run every ``every`` seconds on the ``default`` queue.

    The setting behind ``every`` owns the interval: run on every ``migrate``,
    ``setup_maintenance`` and beat start, this brings an existing row back to ``every`` seconds
    (and its expiry to two intervals, so a message older than that expires instead of piling up
    while no worker runs). The admin owns everything else: a row disabled there stays disabled.

    Returns:
        ``(row, state)`` with state ``"registered"`` (created), ``"updated"`` (the interval
        followed the setting) or ``"unchanged"``.
    """
    with transaction.atomic(using=using):
        row = PeriodicTask.objects.using(using).select_for_update().filter(name=name).first()
        if row is None:
            row = PeriodicTask(
                name=name,
                task=task,
                interval=_interval_get(every=every, using=using),
                queue="default",
                expire_seconds=2 * every,
                description=description,
            )
            row.save(using=using)
            return row, "registered"
        current = row.interval
        if (
            current is not None
            and (current.every, current.period) == (every, IntervalSchedule.SECONDS)
            and row.expire_seconds == 2 * every
        ):
            return row, "unchanged"
        row.interval = _interval_get(every=every, using=using)
        row.expire_seconds = 2 * every
        row.save(using=using, update_fields=["interval", "expire_seconds"])
    return row, "updated"


def batch_poll_schedule_ensure(*, using: str = "default") -> tuple[PeriodicTask, str]:
    """Register ``llm.poll_batches`` every ``BATCH_POLL_INTERVAL`` seconds: polling is driven
    from the database, so restarting every process resumes all open batches. Returns what
    ``interval_task_ensure`` returns."""
    return interval_task_ensure(
        name=BATCH_POLL_SCHEDULE_NAME,
        task=BATCH_POLL_TASK,
        every=int(settings.BATCH_POLL_INTERVAL),
        description=(
            "Recovers, polls and collects open provider batches and submits the next ones "
            "(llm/services/batches.py). The interval follows BATCH_POLL_INTERVAL on every "
            "start; enable or disable it here."
        ),
        using=using,
    )


def maintenance_schedules_ensure(*, using: str = "default") -> list[tuple[PeriodicTask, str]]:
    """Register every maintenance schedule (the reconciler and the batch poller) or bring its
    interval back to its setting. Returns ``(row, state)`` pairs as ``interval_task_ensure``."""
    from llm.services.reconcile import reconcile_schedule_ensure

    return [reconcile_schedule_ensure(using=using), batch_poll_schedule_ensure(using=using)]
