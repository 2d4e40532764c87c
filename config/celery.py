"""Celery application with reliability-first defaults.

- JSON only: tasks take ids, never pickled objects.
- ``task_acks_late`` + ``task_reject_on_worker_lost``: a task killed mid-way is redelivered, so
  every task must be idempotent (it finds its row done and returns).
- Prefetch multiplier 1: a worker reserves one task at a time, so long LLM tasks do not starve.
- The Redis visibility timeout (broker and result backend) is longer than the longest task, or
  Redis would redeliver tasks that are still running.
- ``result_backend_always_retry``: a Redis blip while storing a result retries instead of failing.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery
from celery.signals import beat_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("clustersum")


app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@beat_init.connect
def _maintenance_schedules_follow_settings(sender: Any = None, **kwargs: Any) -> None:
    """On every beat start, before the scheduler reads its rows: register the maintenance
    schedules or bring their intervals back to ``BATCH_POLL_INTERVAL`` and
    ``RECONCILE_INTERVAL_SECONDS`` (the settings own the interval, the admin owns ``enabled``).
    A database error is logged, not raised: the scheduler reports it itself."""
    from llm.services.maintenance import maintenance_schedules_ensure

    log = logging.getLogger("clustersum.beat")
    try:
        for row, state in maintenance_schedules_ensure():
            if state != "unchanged":
                log.info("maintenance schedule %r %s: %s", row.name, state, row.interval)
    except Exception as exc:  # beat must still start; its scheduler reports the database
        log.warning("maintenance schedules not checked at beat start: %s", exc)
