"""Celery application with reliability-first defaults.

- JSON only: tasks take ids, never pickled objects.
- ``task_acks_late`` + ``task_reject_on_worker_lost``: a task killed mid-way is redelivered, so
  every task must be idempotent (it finds its row done and returns).
- Prefetch multiplier 1: a worker reserves one task at a time, so long LLM tasks do not starve.
- The Redis visibility timeout (broker and result backend) is longer than the longest task, or
  Redis would redeliver tasks that are still running.
- ``result_backend_always_retry``: a Redis blip while storing a result retries instead of failing.
- Bounded tasks: ``CELERY_TASK_TIME_LIMIT`` (the soft limit 30 s before it lets a clustering run
  record "time limit" on its row) and ``CELERY_WORKER_MEMORY_LIMIT_MB``, the address-space limit
  of each prefork child (a task past it gets ``MemoryError``: "memory limit" on its row).
"""

from __future__ import annotations

import logging
import os
import resource
from typing import Any

from celery import Celery
from celery.signals import beat_init, worker_process_init

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


def memory_limit_apply(limit_mb: int) -> None:
    """Limit this process's address space to ``limit_mb`` megabytes (``RLIMIT_AS``; never above
    an existing hard limit); 0 leaves it unlimited. Allocations past it raise ``MemoryError``."""
    if limit_mb <= 0:
        return
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    wanted = limit_mb * 1024 * 1024
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_AS, (wanted, hard))


@worker_process_init.connect
def _limit_child_memory(**kwargs: Any) -> None:
    """Each prefork child gets ``CELERY_WORKER_MEMORY_LIMIT_MB``."""
    from django.conf import settings

    memory_limit_apply(int(getattr(settings, "CELERY_WORKER_MEMORY_LIMIT_MB", 0)))
