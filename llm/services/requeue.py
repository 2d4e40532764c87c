"""Sending a cluster's task back to the queue after a transient failure (issue 11, item 6).

When the generation call of a cluster still fails transiently after ``LLM_CALL_TRIES`` tries
(5xx, timeouts, connection errors; or rate limits beyond ``LLM_RATE_LIMIT_BUDGET``), the cluster
is not ended failed: :func:`task_requeue` resets its task to pending (the attempt is not counted)
and raises :class:`TaskRequeued`, on which the Celery task retries itself with a countdown. The
job's deadline bounds this (no fixed count); in eager mode (no broker) the task fails as before.
"""

from __future__ import annotations

import logging
import random

from django.conf import settings
from django.utils import timezone

from llm.models import GenerationJob, SummaryTask, TaskState
from llm.providers.base import ProviderError

logger = logging.getLogger(__name__)


class TaskRequeued(Exception):
    """The cluster's task went back to the queue after a transient failure: the caller (the
    Celery task) sends it again after ``countdown`` seconds."""

    def __init__(self, countdown: float, reason: str) -> None:
        super().__init__(reason)
        self.countdown = countdown


#: seconds a requeued task must still have before the job's deadline, beyond its countdown
REQUEUE_DEADLINE_MARGIN = 30.0


def requeue_countdown(
    *, deliveries: int, retry_after: float | None, remaining: float | None
) -> float | None:
    """Seconds to wait before a cluster whose generation failed transiently is tried again:
    ``LLM_BACKOFF_BASE * 2**deliveries`` (jittered in [0.5x, 1.5x]), at least the provider's
    ``retry_after``, at most ``LLM_BACKOFF_MAX``; None when ``remaining`` seconds before the
    job's deadline cannot hold it plus ``REQUEUE_DEADLINE_MARGIN``, or in eager mode (no
    broker to hold a delayed message)."""
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return None
    base = settings.LLM_BACKOFF_BASE * 2 ** min(max(deliveries, 0), 16)
    jittered = base * random.uniform(0.5, 1.5)
    countdown = max(0.1, min(settings.LLM_BACKOFF_MAX, max(retry_after or 0.0, jittered)))
    if remaining is not None and countdown + REQUEUE_DEADLINE_MARGIN >= remaining:
        return None
    return countdown


def task_requeue(task: SummaryTask, job: GenerationJob, error: ProviderError, reason: str) -> None:
    """Send the task back to the queue (raise :class:`TaskRequeued`) after a transient failure
    of its generation call, without using up the attempt; return when the job's deadline (or
    eager mode) does not allow it, so the caller fails the task as before."""
    remaining = (job.deadline - timezone.now()).total_seconds() if job.deadline else None
    countdown = requeue_countdown(
        deliveries=task.deliveries, retry_after=error.retry_after, remaining=remaining
    )
    if countdown is None:
        return
    task.attempts -= 1  # the attempt produced no answer: it is not counted against the cluster
    note = f"requeued for {countdown:.1f} s after a transient failure: {reason}"
    SummaryTask.objects.filter(pk=task.pk).update(
        state=TaskState.PENDING,
        lease_until=None,
        attempts=task.attempts,
        last_error=note[:4000],
        updated_at=timezone.now(),  # not stalled: the reconciler leaves it to the countdown
    )
    logger.warning("summary task %s %s", task.pk, note)
    raise TaskRequeued(countdown, note)
