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

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("clustersum")


app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
