"""Calls of unknown outcome: ``LLMCall`` rows left ``started`` by a worker that died in flight.

A realtime call's row is written ``started`` (with ``projected_cost_usd``) and committed before
the request leaves (llm/services/calls.py). A row still ``started`` belongs to a dead call when

- it is older than ``LLM_JOB_TIME_LIMIT`` + ``LLM_TIMEOUT`` + :data:`DEAD_MARGIN_SECONDS` (no
  live call lasts longer: the row is written before the shared rate limit, which waits at most
  until the job's deadline, and the SDK gives up at ``LLM_TIMEOUT``), or
- its task no longer belongs to the delivery that made the call: the task is finished, pending
  again (re-driven), or running under an expired lease (its worker is gone).

Such rows are marked ``unknown`` with ``cost_usd = projected_cost_usd``: the provider may have
received, answered and billed the request, so the job's cost includes the projection and says
how many calls and how many dollars of it are projected (``GenerationJob.unknown_calls``,
``unknown_cost_usd``). A worker that was only slow and completes its row later overwrites the
mark with the real outcome.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Count, F, Q, Sum
from django.utils import timezone

from llm.models import TERMINAL_STATES, GenerationJob, LLMCall, TaskState

#: Seconds past ``LLM_TIMEOUT`` after which a started call is taken for dead.
DEAD_MARGIN_SECONDS = 60
#: Rows marked per pass at most (keeps the UPDATE short; the rest waits for the next pass).
MARK_BATCH = 2000


def dead_calls_filter(now: datetime) -> Q:
    """The condition on ``LLMCall`` rows of calls that died in flight (see the module doc)."""
    longest = settings.LLM_JOB_TIME_LIMIT + float(settings.LLM_TIMEOUT) + DEAD_MARGIN_SECONDS
    too_old = now - timedelta(seconds=longest)
    owner_gone = (
        Q(task__state__in=TERMINAL_STATES)
        | Q(task__state=TaskState.PENDING)
        | Q(task__state=TaskState.RUNNING, task__lease_until__lt=now)
    )
    return Q(status=LLMCall.Status.STARTED) & (
        Q(created_at__lt=too_old) | Q(task__isnull=False) & owner_gone
    )


def calls_mark_unknown(
    *, now: datetime | None = None, job_id: int | None = None
) -> tuple[int, list[int]]:
    """Mark the rows of dead calls (all jobs, or ``job_id``'s) ``unknown`` with their projected
    cost; returns (rows marked, ids of their jobs), so the jobs' totals can be written again."""
    now = now or timezone.now()
    rows = LLMCall.objects.filter(dead_calls_filter(now))
    if job_id is not None:
        rows = rows.filter(job_id=job_id)
    picked = list(rows.order_by("pk").values_list("pk", "job_id")[:MARK_BATCH])
    if not picked:
        return 0, []
    still_started = LLMCall.objects.filter(
        pk__in=[pk for pk, _ in picked], status=LLMCall.Status.STARTED
    )
    marked = still_started.update(
        status=LLMCall.Status.UNKNOWN,
        cost_usd=F("projected_cost_usd"),
        error_class="unknown_outcome",
        error_message=(
            "unknown outcome: the worker stopped while the request was in flight; the provider "
            "may have answered and billed it, so its projected cost is counted"
        ),
    )
    return marked, sorted({job for _, job in picked if job is not None})


def job_usage(job_id: int) -> dict[str, Any]:
    """The job's call totals as ``GenerationJob`` fields: input/output tokens, cost (USD,
    including the projected cost of calls of unknown outcome), and those calls' count and
    projected cost."""
    unknown = Q(status=LLMCall.Status.UNKNOWN)
    usage = LLMCall.objects.filter(job_id=job_id).aggregate(
        i=Sum("input_tokens"),
        o=Sum("output_tokens"),
        c=Sum("cost_usd"),
        n=Count("id", filter=unknown),
        u=Sum("cost_usd", filter=unknown),
    )
    return {
        "input_tokens": usage["i"] or 0,
        "output_tokens": usage["o"] or 0,
        "cost_usd": usage["c"] or Decimal(0),
        "unknown_calls": usage["n"] or 0,
        "unknown_cost_usd": usage["u"] or Decimal(0),
    }


def jobs_usage_refresh(job_ids: list[int]) -> None:
    """Write the call totals of ``job_ids`` again (after some of their calls were marked)."""
    for job_id in job_ids:
        GenerationJob.objects.filter(pk=job_id).update(**job_usage(job_id))
