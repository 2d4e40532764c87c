"""Steps of the summary pipeline shared by realtime mode (llm/services/generation.py) and batch
mode (llm/services/batches.py, batch_collect.py): the requests of a task's next step, recording a
generation's or a judgement's outcome, storing the summary, finishing a task and the job.

Each step states its contract: what it SHALL do, and what it may assume of its caller. Common to
all: the caller holds the task (claimed by the realtime driver, or owned by the batch driver under
its lease), so no step takes a lock on the task row itself; ``task`` is a loaded ``SummaryTask``
with ``job``, ``cluster``, ``cluster.run`` and ``cluster.run.dataset`` reachable; ``ctx`` is the
task's cluster context (:func:`~llm.services.context.cluster_context_build`). Steps write through
to the database and keep the in-memory ``task`` in step with what they wrote.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q, Sum
from django.utils import timezone
from pydantic import BaseModel

from llm.context import ClusterContext
from llm.models import (
    TERMINAL_STATES,
    ClusterSummary,
    GenerationJob,
    JobStatus,
    LLMCall,
    SummaryTask,
    TaskState,
    ValidationEvent,
    ValidationStatus,
    Verdict,
)
from llm.prompts.schemas import JudgeVerdict, summary_class_for
from llm.prompts.templates import (
    JUDGE_PROMPT_VERSION,
    build_generation_prompt,
    build_judge_prompt,
    prompt_version_for,
)
from llm.providers.base import ProviderRequest
from llm.ratelimit import rate_note_for
from llm.services.cache import (
    current_summaries,
    stored_meanwhile_wins,
)
from llm.services.call_log import calls_mark_unknown, job_usage
from llm.services.judging import (
    ACCEPT_WITH_CORRECTIONS,
    LOW_CONFIDENCE,
    REJECT,
    corrections_apply,
    corrections_note,
    verdict_effective,
)
from llm.services.validation import derived_confidence, validate_summary

logger = logging.getLogger(__name__)

_STATUS_OF_VERDICT = {
    Verdict.ACCEPT: ValidationStatus.VALIDATED,
    Verdict.ACCEPT_WITH_CORRECTIONS: ValidationStatus.VALIDATED,
    Verdict.LOW_CONFIDENCE: ValidationStatus.PENDING,
    Verdict.REJECT: ValidationStatus.REJECTED,
}


def task_finish(
    *, task: SummaryTask, state: str, error: str = "", summary: ClusterSummary | None = None
) -> None:
    """End the task in ``state`` (a terminal ``TaskState``) with ``error`` as its last error
    (cut to 4,000 characters) and ``summary`` as its summary.

    SHALL clear the lease, stamp ``finished_at``, write the in-memory attempt count, and note the
    job's progress (at most once per :data:`PROGRESS_MIN_INTERVAL` per job and process, never
    inside :func:`progress_deferred`). May assume the caller holds the task; it does not check
    the task's current state, so the caller decides that the task is still its to finish.
    """
    SummaryTask.objects.filter(pk=task.pk).update(
        state=state,
        last_error=error[:4000],
        summary=summary,
        lease_until=None,
        finished_at=timezone.now(),
        attempts=task.attempts,
    )
    _progress(task.job_id, task.cluster.number)


#: set while a batch's results are processed: progress is written once per batch instead
_DEFER_PROGRESS: contextvars.ContextVar[bool] = contextvars.ContextVar("defer", default=False)


@contextlib.contextmanager
def progress_deferred() -> Iterator[None]:
    """Within the block (this thread or task context only), finishing a task SHALL NOT write
    the job's progress line: a caller that finishes many tasks at once (a batch's results)
    writes it once itself. Nests; the previous setting is restored on exit, also on error."""
    token = _DEFER_PROGRESS.set(True)
    try:
        yield
    finally:
        _DEFER_PROGRESS.reset(token)


#: Seconds between two progress writes of one job by one process. Counting a job's finished
#: tasks reads every task row, so writing it after every cluster would cost O(clusters) per
#: cluster; the finalize step writes the exact final counts whatever was skipped here.
PROGRESS_MIN_INTERVAL = 1.0
_progress_written: dict[int, float] = {}
_progress_lock = threading.Lock()


def _progress_due(job_id: int) -> bool:
    now = time.monotonic()
    with _progress_lock:
        if now - _progress_written.get(job_id, -PROGRESS_MIN_INTERVAL) < PROGRESS_MIN_INTERVAL:
            return False
        if len(_progress_written) > 1000:  # finished jobs' entries
            _progress_written.clear()
        _progress_written[job_id] = now
        return True


def _progress(job_id: int, number: int) -> None:
    if _DEFER_PROGRESS.get() or not _progress_due(job_id):
        return
    counts = SummaryTask.objects.filter(job_id=job_id).aggregate(
        total=Count("id"), done=Count("id", filter=Q(state__in=TERMINAL_STATES))
    )
    GenerationJob.objects.filter(pk=job_id).update(
        progress_current=counts["done"],
        progress_total=counts["total"],
        progress_message=(
            f"Generating {counts['done']}/{counts['total']} clusters - cluster {number}"
            + (f" - {note}" if (note := rate_note_for(job_id)) else "")
        ),
    )


# --- steps shared by realtime and batch mode ------------------------------------------------

NEXT_GENERATE = "generate"
NEXT_JUDGE = "judge"
#: failed generations that another attempt (with feedback) may fix; others end the task
RETRY_BY_REGENERATING = ("validation_failed", "blocked")


def generation_request(
    *, job: GenerationJob, task: SummaryTask, ctx: ClusterContext
) -> ProviderRequest[Any]:
    """The generation request of the task's current attempt, with its accumulated feedback.

    SHALL be a pure function of the job's model, the task's attempt count and feedback and the
    context, with ``custom_id`` ``j<job>-t<task>-g<attempt>`` (unique per attempt, so batch
    results match back and a resubmission is recognised); writes nothing. May assume
    ``task.attempts`` already counts the attempt being made.
    """
    system, user = build_generation_prompt(ctx, feedback=list(task.feedback) or None)
    return ProviderRequest(
        system_prompt=system,
        user_prompt=user,
        output_class=summary_class_for(ctx.cluster_type),
        model=job.model,
        temperature=settings.LLM_TEMPERATURE,
        max_output_tokens=settings.LLM_MAX_OUTPUT_TOKENS,
        custom_id=f"j{job.pk}-t{task.pk}-g{task.attempts}",
    )


def judge_request(
    *, job: GenerationJob, task: SummaryTask, ctx: ClusterContext, summary: BaseModel
) -> ProviderRequest[Any]:
    """The judge request for ``summary`` (the task's draft of its current attempt).

    SHALL be a pure function of its arguments, on the job's judge model at temperature 0, with
    ``custom_id`` ``j<job>-t<task>-j<attempt>``; writes nothing. May assume ``summary`` passed
    entity validation (it is the draft :func:`on_generation` kept).
    """
    system, user = build_judge_prompt(ctx, summary)
    return ProviderRequest(
        system_prompt=system,
        user_prompt=user,
        output_class=JudgeVerdict,
        model=job.judge_model,
        temperature=0.0,
        max_output_tokens=1024,
        custom_id=f"j{job.pk}-t{task.pk}-j{task.attempts}",
        # the run's shared frozenset, not a copy: for the extractive judge only (vendors' requests
        # carry the prompts alone), and copying it per request cost O(dataset) per cluster
        metadata={"dataset_symbols": ctx.dataset_symbols},
    )


def draft_summary(*, task: SummaryTask, ctx: ClusterContext) -> BaseModel:
    """The task's draft summary as its pydantic class (of ``ctx.cluster_type``).

    SHALL read only the in-memory task. May assume the task has a draft (its phase is judge);
    raises ``AssertionError`` when it has none and pydantic's ``ValidationError`` when the draft
    no longer fits the schema.
    """
    assert task.draft is not None
    return summary_class_for(ctx.cluster_type).model_validate(task.draft["summary"])


def _save_progress(task: SummaryTask, *, phase: str, error: str) -> None:
    task.phase = phase
    task.last_error = error[:4000]
    SummaryTask.objects.filter(pk=task.pk).update(
        phase=task.phase, draft=task.draft, feedback=task.feedback, last_error=task.last_error
    )


def on_generation(
    *,
    task: SummaryTask,
    ctx: ClusterContext,
    parsed: BaseModel | None,
    error_message: str,
    error_kind: str,
    call: LLMCall | None,
) -> str:
    """Record one generation attempt's outcome; returns the next step (generate or judge).

    Broken or blocked output and entity-validation failures go into the task's feedback for
    the next attempt; a valid, grounded summary becomes the draft the judge will see.

    SHALL write the task's phase, draft, feedback and last error (one statement), and mark
    ``call`` as ``validation_failed`` when the summary fails entity validation; SHALL NOT finish
    the task, store a summary or count an attempt. May assume ``parsed`` is None exactly when
    the call gave no usable output (``error_kind`` then says why, and is one of
    :data:`RETRY_BY_REGENERATING`: other errors are the caller's to handle), and that
    ``task.attempts`` counts this attempt.
    """
    if parsed is None:
        task.feedback = [
            *task.feedback,
            f"Your previous answer could not be used ({error_kind}): {error_message[:500]}. "
            "Answer with valid JSON for the schema.",
        ]
        _save_progress(
            task,
            phase=NEXT_GENERATE,
            error=f"generation attempt {task.attempts}: {error_message}",
        )
        return NEXT_GENERATE
    failures = validate_summary(ctx, parsed)
    task.draft = {"summary": parsed.model_dump(mode="json"), "failures": failures, "verdict": None}
    if failures:
        if call is not None:
            LLMCall.objects.filter(pk=call.pk).update(
                status=LLMCall.Status.VALIDATION_FAILED,
                error_class="entity_validation",
                error_message="; ".join(failures)[:4000],
            )
        task.feedback = [*task.feedback, *(f"Validation failure: {f}" for f in failures)]
        _save_progress(
            task,
            phase=NEXT_GENERATE,
            error=f"attempt {task.attempts}: entity validation failed: " + "; ".join(failures),
        )
        return NEXT_GENERATE
    _save_progress(task, phase=NEXT_JUDGE, error="")
    return NEXT_JUDGE


def on_judgement(
    *, task: SummaryTask, ctx: ClusterContext, verdict: JudgeVerdict | None, error_message: str
) -> str:
    """Record the judge's verdict on the draft; returns a final task state, or generate after a
    reject. A failed judge call stores the draft as pending with a reasoning saying so.

    The verdict acted on is :func:`~llm.services.judging.verdict_effective` (hard failures and
    grounding bands); ``accept_with_corrections`` applies the corrections, validated again
    (:func:`~llm.services.judging.corrections_apply`), and stores the corrected summary as
    validated, or the uncorrected one as pending when a correction is refused.

    SHALL either store the summary and finish the task in one transaction (at most one current
    summary per composition and cluster type; a curator-locked one, or one stored meanwhile by
    an unforced job, wins and the task ends skipped: llm/services/cache.py), or, after a
    reject, add the reasoning to the feedback and return :data:`NEXT_GENERATE` without
    finishing. May assume the task holds the draft that was judged (:func:`on_generation`).
    """
    summary = draft_summary(task=task, ctx=ctx)
    if verdict is None:
        stored = _summary_store(
            task,
            ctx,
            summary,
            status=ValidationStatus.PENDING,
            verdict=None,
            reasoning=(
                "The judge could not be reached, so this summary waits for human review "
                f"({error_message})."
            ),
            failures=[],
        )
        return _stored_outcome(task, stored)
    assert task.draft is not None
    effective, notes = verdict_effective(verdict, cluster_size=ctx.size)
    task.draft = {
        **task.draft,
        "verdict": verdict.model_dump(mode="json"),
        "effective_verdict": effective,
    }
    reasoning = verdict.reasoning
    if notes:
        reasoning += " Server: " + "; ".join(notes) + "."
    if effective != REJECT:
        applied: list[dict[str, Any]] = []
        if effective == ACCEPT_WITH_CORRECTIONS:
            outcome = corrections_apply(ctx, summary, verdict)
            if outcome.refused:
                effective = LOW_CONFIDENCE
                reasoning += f" Server: {outcome.refused}"
            else:
                summary, applied = outcome.summary, outcome.applied
                if applied:
                    reasoning += f" Corrections applied: {corrections_note(applied)}."
        stored = _summary_store(
            task,
            ctx,
            summary,
            status=_STATUS_OF_VERDICT[Verdict(effective)],
            verdict=verdict,
            reasoning=reasoning,
            failures=[],
            effective_verdict=effective,
            corrections=applied,
        )
        return _stored_outcome(task, stored)
    task.feedback = [
        *task.feedback,
        f"The reviewer rejected the previous summary: {reasoning}",
    ]
    _save_progress(
        task,
        phase=NEXT_GENERATE,
        error=f"attempt {task.attempts}: judge rejected: {reasoning}",
    )
    return NEXT_GENERATE


def attempts_exhausted(*, task: SummaryTask, ctx: ClusterContext) -> str:
    """End a task that used all its attempts: the last draft is stored as rejected with the
    judge's reasoning or the validation failures; with no usable draft the task fails.

    Returns the task's final state. SHALL finish the task (through the same store and cache
    rules as :func:`on_judgement`) and make no provider call. May assume
    ``task.attempts >= LLM_MAX_ATTEMPTS`` (the caller decided no attempt is left).
    """
    if not task.draft:
        task_finish(
            task=task,
            state=TaskState.FAILED,
            error=f"no valid output after {task.attempts} attempts; {task.last_error}",
        )
        return TaskState.FAILED
    verdict = _stored_verdict(task.draft.get("verdict"))
    failures = list(task.draft.get("failures") or [])
    if verdict is not None:
        reasoning = verdict.reasoning
    else:
        reasoning = "Entity validation failed on the last attempt: " + "; ".join(failures)
    stored = _summary_store(
        task,
        ctx,
        draft_summary(task=task, ctx=ctx),
        status=ValidationStatus.REJECTED,
        verdict=verdict,
        reasoning=reasoning,
        failures=failures,
        effective_verdict=REJECT if verdict is not None else "",
        finish_error=f"rejected after {task.attempts} attempts: {reasoning}",
    )
    return _stored_outcome(task, stored)


def _stored_verdict(raw: Any) -> JudgeVerdict | None:
    """The judge verdict kept in a task's draft; None when absent or from an older judge prompt
    whose fields no longer validate (the reasoning then comes from the task's last error)."""
    if not raw:
        return None
    try:
        return JudgeVerdict.model_validate(raw)
    except ValueError:
        return None


def _stored_outcome(task: SummaryTask, stored: ClusterSummary | None) -> str:
    """The task's final state after :func:`_summary_store` (which finished the task)."""
    if stored is None:  # a curator's summary was kept, or another job stored one meanwhile
        return TaskState.SKIPPED
    return _state_of(stored.validation_status)


def _state_of(status: str) -> str:
    return TaskState.REJECTED if status == ValidationStatus.REJECTED else TaskState.SUCCEEDED


def _summary_store(
    task: SummaryTask,
    ctx: ClusterContext,
    summary: BaseModel,
    *,
    status: str,
    verdict: JudgeVerdict | None,
    reasoning: str,
    failures: list[str],
    effective_verdict: str = "",
    corrections: list[dict[str, Any]] | None = None,
    finish_error: str = "",
) -> ClusterSummary | None:
    """Write the summary as the current one for its composition, with its audit event, and
    finish the task (succeeded, or rejected with ``finish_error``) in the same transaction.

    Returns None (and finishes the task as skipped) when the current summary is locked by a
    curator, or when another job already stored one and this job is not forcing.

    SHALL store at most one current summary per composition and cluster type (the one it
    replaces is locked for the transaction and made not current), with the tokens and cost of
    the task's calls of known outcome. May assume the caller holds the task.
    """
    job = task.job
    cluster = task.cluster
    content = summary.model_dump(mode="json")
    scores: dict[str, Any] = {}
    if verdict is not None:
        scores = verdict.model_dump(
            mode="json",
            include={
                "is_factually_accurate",
                "is_grounded",
                "pathways_valid",
                "confidence_appropriate",
                "grounding_percent",
                "hard_failures",
                "corrections_made",
            },
        )
        scores["rubric"] = verdict.rubric
        scores["rubric_total"] = verdict.rubric_total
        if effective_verdict and effective_verdict != verdict.verdict:
            scores["judged_verdict"] = verdict.verdict
    with transaction.atomic():
        current = (
            current_summaries(cluster_type=ctx.cluster_type, hashes=[cluster.composition_hash])
            .select_for_update()
            .first()
        )
        why = stored_meanwhile_wins(current, force=job.force)
        if why is not None:
            task_finish(task=task, state=TaskState.SKIPPED, error=why, summary=current)
            return None
        if current is not None:
            ClusterSummary.objects.filter(pk=current.pk).update(is_current=False)
        # calls of unknown outcome (a worker died in flight) are left out: the summary's cost
        # is what was billed for it as far as we know; the job's totals count those apart.
        # (A Subquery per column in the INSERT saves this statement but costs more in Python.)
        totals = (
            LLMCall.objects.filter(task_id=task.pk)
            .exclude(status__in=[LLMCall.Status.STARTED, LLMCall.Status.UNKNOWN])
            .aggregate(i=Sum("input_tokens"), o=Sum("output_tokens"), c=Sum("cost_usd"))
        )
        stored = ClusterSummary.objects.create(
            composition_hash=cluster.composition_hash,
            cluster_type=ctx.cluster_type,
            is_current=True,
            dataset=cluster.run.dataset,
            cluster=cluster,
            members=ctx.symbols,
            content=content,
            summary_text=str(content.get("summary", "")),
            tags=list(content.get("tags", [])),
            confidence=str(content.get("confidence", "")),
            derived_confidence=derived_confidence(ctx),
            provider=job.provider,
            model=job.model,
            prompt_version=prompt_version_for(ctx.cluster_type),
            attempts=task.attempts,
            input_tokens=totals["i"] or 0,
            output_tokens=totals["o"] or 0,
            cost_usd=totals["c"] or Decimal(0),
            validation_status=status,
            validation_failures=failures,
            judge_verdict=(effective_verdict or verdict.verdict) if verdict is not None else "",
            corrections=list(corrections or []),
            judge_reasoning=reasoning,
            judge_scores=scores,
            judge_model=job.judge_model,
            judge_prompt_version=JUDGE_PROMPT_VERSION,
        )
        ValidationEvent.objects.create(
            summary=stored,
            source=ValidationEvent.Source.JUDGE
            if verdict is not None
            else ValidationEvent.Source.SYSTEM,
            from_status="",
            to_status=status,
            note=reasoning[:2000],
        )
        if corrections:
            ValidationEvent.objects.create(
                summary=stored,
                source=ValidationEvent.Source.JUDGE,
                from_status=status,
                to_status=status,
                note=(
                    "Judge corrections applied and re-validated: " + corrections_note(corrections)
                )[:2000],
            )
        task_finish(task=task, state=_state_of(status), error=finish_error, summary=stored)
    return stored


# --- finalize -----------------------------------------------------------------------------------


def job_finalize(*, job_id: int) -> bool:
    """Compute the job's totals from its ``SummaryTask`` rows and tokens and cost from its
    ``LLMCall`` rows (calls of unknown outcome counted apart and at their projected cost, see
    llm/services/call_log.py); mark it succeeded when every task is finished.

    Returns False (and changes nothing but the totals) while some task is still unfinished, so a
    caller can try again later; True once the job is final. Idempotent.

    SHALL mark the job's still-started calls unknown only once every task is finished (a call
    row still started then belongs to a dead worker), and SHALL NOT change the status of a job
    already final (cancelled or failed stay so). May assume nothing of the caller: any process
    may call it at any time, repeatedly, also for a deleted job.
    """
    job = GenerationJob.objects.filter(pk=job_id).first()
    if job is None:  # deleted meanwhile (with its run): nothing left to finalize
        return True
    counts = SummaryTask.objects.filter(job=job).aggregate(
        total=Count("id"),
        succeeded=Count("id", filter=Q(state=TaskState.SUCCEEDED)),
        rejected=Count("id", filter=Q(state=TaskState.REJECTED)),
        failed=Count("id", filter=Q(state=TaskState.FAILED)),
        skipped=Count("id", filter=Q(state=TaskState.SKIPPED)),
    )
    done = counts["succeeded"] + counts["rejected"] + counts["failed"] + counts["skipped"]
    final = done == counts["total"]
    if final:  # every task is finished, so a call row still started is one of a dead worker
        calls_mark_unknown(job_id=job.pk)
    update: dict[str, Any] = {
        **counts,
        **job_usage(job.pk),
        "progress_current": done,
        "progress_total": counts["total"],
    }
    if final and job.status in (JobStatus.PENDING, JobStatus.RUNNING):
        update["status"] = JobStatus.SUCCEEDED
        update["finished_at"] = timezone.now()
        update["progress_message"] = (
            f"Done: {counts['succeeded']} succeeded, {counts['rejected']} rejected, "
            f"{counts['failed']} failed, {counts['skipped']} skipped of {counts['total']}"
        )
    GenerationJob.objects.filter(pk=job.pk).update(**update)
    return final
