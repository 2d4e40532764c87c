"""One provider call with the retry policy, the shared rate limit and an ``LLMCall`` row per try.

Row lifecycle: the row is inserted with status ``started`` (and ``projected_cost_usd``, an upper
bound from the prompt's token estimate and ``max_output_tokens``) and committed *before* the
shared rate limit is consulted and the request leaves, then completed by one UPDATE when the
answer or error is back (a limiter that gives up completes it as ``timeout``). A worker killed
in flight thus leaves a ``started`` row, which the reconciler marks ``unknown`` (unknown outcome)
with its projected cost (llm/services/reconcile.py), so the call log and the job's cost never
under-count what the provider may have received and billed.

Policy:

- A **429** (the provider's rate limit) is not a failure of the call: it tells the shared limiter
  (:meth:`~llm.ratelimit.SharedRateLimiter.penalize`: every worker slows down and waits the
  provider's Retry-After) and the call waits for capacity and tries again, without using up a
  try. It is given up on rate limits only when ``LLM_RATE_LIMIT_BUDGET`` seconds (default 900)
  have passed since its first try, or the job's deadline comes, never after a count of 429s.
- Other **transient** errors (5xx, timeouts, connection errors) are retried up to
  ``LLM_CALL_TRIES`` tries in all, waiting ``Retry-After`` when the provider sent it, else an
  exponential backoff ``min(LLM_BACKOFF_MAX, LLM_BACKOFF_BASE * 2**(try-1))`` with full jitter
  in [0.5x, 1.5x].
- **Permanent** errors (400, 401/403/404, invalid output, blocked) are not retried here.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from pydantic import BaseModel

from llm.models import GenerationJob, JobStatus, LLMCall, SummaryTask
from llm.pricing import call_cost
from llm.providers.base import Provider, ProviderError, ProviderRequest, ProviderResult, redact
from llm.providers.registry import api_keys
from llm.ratelimit import RateLimitWaitExceeded, limiter_for, rate_note
from llm.services.insert_select import insert_select_parts

_STATUS_OF_KIND = {
    "api_error": LLMCall.Status.API_ERROR,
    "timeout": LLMCall.Status.TIMEOUT,
    "blocked": LLMCall.Status.BLOCKED,
    "validation_failed": LLMCall.Status.VALIDATION_FAILED,
}


class JobCancelled(Exception):
    """The call's job was cancelled: ``provider_call(stop_if_cancelled=True)`` wrote no started
    row for the try and sent no request (the caller's ``on_start`` write was rolled back)."""


@dataclass
class CallOutcome:
    """The end of a call after retries: ``result`` on success, else ``error``; ``call`` is the
    last ``LLMCall`` row written."""

    result: ProviderResult[Any] | None
    error: ProviderError | None
    call: LLMCall


def backoff_seconds(try_number: int, retry_after: float | None) -> float:
    """Seconds to wait before try ``try_number + 1``: the provider's Retry-After when given
    (honoured exactly, plus up to 0.25 s jitter), else jittered exponential backoff."""
    if retry_after is not None and retry_after >= 0:
        return retry_after + random.uniform(0, 0.25)
    base = min(settings.LLM_BACKOFF_MAX, settings.LLM_BACKOFF_BASE * 2 ** (try_number - 1))
    return base * random.uniform(0.5, 1.5)


def provider_call(
    *,
    provider: Provider,
    request: ProviderRequest[BaseModel],
    kind: str,
    job: GenerationJob | None,
    task: SummaryTask | None,
    attempt: int,
    deadline: float | None = None,
    on_start: Callable[[], None] | None = None,
    stop_if_cancelled: bool = False,
) -> CallOutcome:
    """Call ``provider`` with retries, the shared rate limit and one ``LLMCall`` per try.

    ``deadline`` is a ``time.monotonic()`` value after which no new try starts (the job's time
    limit). ``on_start`` (the caller's own write, e.g. counting the attempt on its task) runs
    once, in the transaction that inserts the first try's ``started`` row. Never raises for
    provider failures: they come back as ``CallOutcome.error``.

    With ``stop_if_cancelled`` every try's started row is written only while ``job`` is not
    cancelled, checked by that same ``INSERT`` (no separate query): on a cancelled job it raises
    :class:`JobCancelled` before any request of that try leaves.
    """
    limiter = limiter_for(provider.name, request.model)
    tries = settings.LLM_CALL_TRIES
    estimated_tokens = (len(request.system_prompt) + len(request.user_prompt)) // 4
    projected = call_cost(request.model, estimated_tokens, request.max_output_tokens)
    hook = [on_start] if on_start is not None else []

    def identity(try_number: int) -> dict[str, Any]:
        return {
            "job": job,
            "task": task,
            "kind": kind,
            "attempt": attempt,
            "try_number": try_number,
            "provider": provider.name,
            "model": request.model,
        }

    started_at = time.monotonic()
    budget_end = started_at + settings.LLM_RATE_LIMIT_BUDGET
    if deadline is not None:
        budget_end = min(budget_end, deadline)
    errors = 0  # failed tries that count against LLM_CALL_TRIES (429s do not)
    try_number = 0
    while True:
        try_number += 1
        error: ProviderError | None = None
        result: ProviderResult[Any] | None = None
        started: LLMCall | None = None
        wait_exceeded = False
        try:
            # written before the rate-limit slot is taken, so no database round trip sits
            # between the slot and the request (it would bunch arrivals at the provider);
            # a lone INSERT commits by itself: BEGIN and COMMIT would be two more round trips
            with transaction.atomic() if hook else contextlib.nullcontext():
                while hook:
                    hook.pop()()
                if stop_if_cancelled and job is not None:
                    started = _started_unless_cancelled(
                        LLMCall(
                            **identity(try_number),
                            status=LLMCall.Status.STARTED,
                            projected_cost_usd=projected,
                        )
                    )
                else:
                    started = LLMCall.objects.create(
                        **identity(try_number),
                        status=LLMCall.Status.STARTED,
                        projected_cost_usd=projected,
                    )
            # waiting for capacity is bounded by the rate-limit budget (and the deadline)
            max_wait = max(1.0, budget_end - time.monotonic())
            if provider.name != "extractive":  # the offline baseline calls nobody
                limiter.acquire(tokens=estimated_tokens, max_wait=max_wait)
            result = provider.generate(request)
        except JobCancelled:
            raise
        except ProviderError as exc:
            error = exc
        except RateLimitWaitExceeded as exc:  # no capacity within the budget: given up
            error = ProviderError(str(exc), transient=True, kind="timeout")
            wait_exceeded = True
        except Exception as exc:  # a provider bug must not kill the cluster silently
            error = ProviderError(f"{type(exc).__name__}: {exc}", transient=False)
        while hook:  # the started row could not be written: the caller's write still holds
            hook.pop()()
        call = _record(
            started=started,
            identity=identity(try_number),
            model=request.model,
            result=result,
            error=error,
        )
        if error is None:
            return CallOutcome(result=result, error=None, call=call)
        if wait_exceeded:
            return CallOutcome(result=None, error=error, call=call)
        if error.rate_limited:
            learned = limiter.penalize(
                retry_after=error.retry_after, provider_limit=error.provider_limit
            )
            if job is not None:
                rate_note(job.pk, learned.describe())
            if time.monotonic() >= budget_end:
                error.message = (
                    f"rate limited for {time.monotonic() - started_at:.0f} s "
                    f"(LLM_RATE_LIMIT_BUDGET or the job's deadline): {error.message}"
                )
                return CallOutcome(result=None, error=error, call=call)
            continue  # the limiter now holds this call until the provider has room
        errors += 1
        if not error.transient or errors >= tries:
            return CallOutcome(result=None, error=error, call=call)
        pause = backoff_seconds(errors, error.retry_after)
        if deadline is not None and time.monotonic() + pause > deadline:
            return CallOutcome(result=None, error=error, call=call)
        time.sleep(pause)
    raise AssertionError("unreachable")  # pragma: no cover


def _started_unless_cancelled(call: LLMCall) -> LLMCall:
    """Insert ``call`` (a started row of a job) unless its job is cancelled, in one
    ``INSERT ... SELECT ... WHERE NOT EXISTS`` (the cancellation check rides on the insert);
    returns ``call`` saved, or raises :class:`JobCancelled` having written nothing.

    Every column gets what ``Model.save`` would give it (``pre_save``: ``auto_now_add``, field
    defaults), so a column added to ``LLMCall`` later is filled the same way.
    """
    quote = connection.ops.quote_name
    columns, values, params = insert_select_parts(
        LLMCall, value_of=lambda field: field.pre_save(call, add=True)
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {quote(LLMCall._meta.db_table)} ({columns}) "
            f"SELECT {values} WHERE NOT EXISTS (SELECT 1 FROM "
            f"{quote(GenerationJob._meta.db_table)} WHERE id = %s AND status = %s) "
            f"RETURNING {quote(str(LLMCall._meta.pk.column))}",
            [*params, call.job_id, JobStatus.CANCELLED],
        )
        row = cursor.fetchone()
    if row is None:
        raise JobCancelled(f"job {call.job_id} was cancelled")
    call.pk = row[0]
    call._state.adding = False
    call._state.db = connection.alias
    return call


def _record(
    *,
    started: LLMCall | None,
    identity: dict[str, Any],
    model: str,
    result: ProviderResult[Any] | None,
    error: ProviderError | None,
) -> LLMCall:
    """Complete the try's ``started`` row with its outcome (one UPDATE), or, when the request
    never left (``started`` None), insert the finished row with ``identity`` (job, task, kind,
    attempt, try number, provider, model)."""
    if result is not None:
        input_tokens, output_tokens = result.input_tokens, result.output_tokens
        status, latency, version = (
            LLMCall.Status.SUCCESS,
            result.latency_seconds,
            result.model_version,
        )
        error_class = error_message = ""
    else:
        assert error is not None
        input_tokens, output_tokens = error.input_tokens, error.output_tokens
        status = _STATUS_OF_KIND.get(error.kind, LLMCall.Status.API_ERROR)
        latency, version = 0.0, ""
        error_class = f"{error.kind}{f' HTTP {error.status_code}' if error.status_code else ''}"
        error_message = redact(error.message, api_keys())[:4000]
    outcome = {
        "model_version": version,
        "status": status,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "latency_seconds": latency,
        "cost_usd": call_cost(model, input_tokens, output_tokens),
        "error_class": error_class,
        "error_message": error_message,
    }
    if started is None:  # the started row could not be written: one row, as is
        return LLMCall.objects.create(**identity, **outcome)
    # the reconciler may have marked the row unknown meanwhile (a call slower than its
    # threshold): the real outcome wins, so no state filter here
    LLMCall.objects.filter(pk=started.pk).update(**outcome)
    for name, value in outcome.items():
        setattr(started, name, value)
    return started
