"""Human review: status overrides with audit, and regeneration of one summary."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from llm.models import (
    ClusterSummary,
    GenerationJob,
    SummaryTask,
    ValidationEvent,
    ValidationStatus,
)


class ReviewError(ValueError):
    """A review request that cannot be carried out; ``field`` names the offending input."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


def summary_status_set(
    *, summary_id: int, status: str, user: Any, note: str = ""
) -> ClusterSummary:
    """Set a summary's validation status as a curator: records who and when, writes a
    ``ValidationEvent`` (source human, from, to, note) and locks the status against reruns of
    the same composition (``human_locked``). Setting the same status again still records the
    event (a curator confirmed it).

    Raises:
        ReviewError: unknown status (field ``validation_status``) or note too long (``note``).
        ClusterSummary.DoesNotExist: no such summary.
    """
    if status not in ValidationStatus.values:
        raise ReviewError(
            "validation_status",
            f"must be one of {', '.join(ValidationStatus.values)}, got {status!r}",
        )
    if len(note) > 2000:
        raise ReviewError("note", "at most 2000 characters")
    with transaction.atomic():
        summary = ClusterSummary.objects.select_for_update().get(pk=summary_id)
        before = summary.validation_status
        summary.validation_status = status
        summary.validated_by = user if getattr(user, "pk", None) else None
        summary.validated_at = timezone.now()
        summary.human_locked = True
        summary.save(
            update_fields=["validation_status", "validated_by", "validated_at", "human_locked"]
        )
        ValidationEvent.objects.create(
            summary=summary,
            user=summary.validated_by,
            source=ValidationEvent.Source.HUMAN,
            from_status=before,
            to_status=status,
            note=note,
        )
    return summary


def summary_regenerate(*, summary_id: int, user: Any, provider: str | None = None) -> GenerationJob:
    """Regenerate one summary now (forced), as a curator asked: a new generation job on the
    summary's cluster, a single task, enqueued after commit. The curator's request lifts the
    human lock (recorded as a ``ValidationEvent``); the old summary is kept as history.

    Raises:
        ReviewError: the summary has no cluster left to regenerate from (field ``summary``).
        ClusterSummary.DoesNotExist: no such summary.
    """
    from django.conf import settings

    from llm.providers.registry import default_judge_model, default_model
    from llm.tasks import enqueue_job

    with transaction.atomic():
        summary = ClusterSummary.objects.select_for_update().get(pk=summary_id)
        if summary.cluster_id is None:
            raise ReviewError("summary", "its cluster was deleted; rerun the clustering instead")
        name = provider or settings.LLM_PROVIDER
        user_or_none = user if getattr(user, "pk", None) else None
        if summary.human_locked:
            summary.human_locked = False
            summary.save(update_fields=["human_locked"])
            ValidationEvent.objects.create(
                summary=summary,
                user=user_or_none,
                source=ValidationEvent.Source.HUMAN,
                from_status=summary.validation_status,
                to_status=summary.validation_status,
                note="regeneration requested: status lock lifted",
            )
        cluster = summary.cluster
        assert cluster is not None
        job = GenerationJob.objects.create(
            run_id=cluster.run_id,
            scope=GenerationJob.Scope.CLUSTERS,
            provider=name,
            model=default_model(name),
            judge_model=default_judge_model(name),
            force=True,
            requested_by=user_or_none,
        )
        SummaryTask.objects.create(job=job, cluster=cluster)
        transaction.on_commit(lambda: enqueue_job(job.pk))
    return job


def job_cancel(*, job_id: int) -> GenerationJob:
    """Cancel a generation job: tasks not yet started end skipped ("job cancelled"); tasks in
    flight finish their current call. Cancelling a finished job changes nothing."""
    from llm.services.pipeline import jobs_cancel

    jobs_cancel(GenerationJob.objects.filter(pk=job_id))
    return GenerationJob.objects.get(pk=job_id)
