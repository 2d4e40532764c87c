"""Summaries (the composition cache), review audit, generation jobs and provider calls.

See DESIGN.md, "Data model". ``ClusterSummary`` is the cache: one current row per
(composition_hash, cluster_type); older rows are kept with ``is_current=False`` as history.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q


class ValidationStatus(models.TextChoices):
    """Review state of a summary; only validated summaries are shown to anonymous readers."""

    PENDING = "pending", "pending"
    VALIDATED = "validated", "validated"
    REJECTED = "rejected", "rejected"


class Verdict(models.TextChoices):
    """The judge's verdict."""

    ACCEPT = "accept", "accept"
    ACCEPT_WITH_CORRECTIONS = "accept_with_corrections", "accept with corrections"
    LOW_CONFIDENCE = "low_confidence", "low confidence"
    REJECT = "reject", "reject"


class ClusterSummary(models.Model):
    """A structured summary of one cluster composition, with its judge verdict and review state.

    ``content`` is the validated output object (FunctionalSummary or PhenotypeSummary as a dict);
    ``input_tokens``/``output_tokens``/``cost_usd`` add up every call that produced it (all
    generation attempts and judge calls). ``human_locked`` is set when a person chose the status:
    reruns of the same composition never overwrite such a summary. After an
    ``accept_with_corrections`` verdict, ``content`` holds the corrected summary and
    ``corrections`` what was changed.
    """

    composition_hash = models.CharField(max_length=64, db_index=True)
    cluster_type = models.CharField(max_length=16)
    is_current = models.BooleanField(default=True)
    dataset = models.ForeignKey(
        "clustering.Dataset", on_delete=models.SET_NULL, null=True, related_name="summaries"
    )
    cluster = models.ForeignKey(
        "clustering.Cluster", on_delete=models.SET_NULL, null=True, related_name="summaries"
    )
    members = models.JSONField(default=list)  # symbols, for search without a join
    content = models.JSONField(default=dict)
    summary_text = models.TextField(blank=True)
    tags = models.JSONField(default=list)
    confidence = models.CharField(max_length=16, blank=True)  # the model's self-assessment
    derived_confidence = models.CharField(max_length=16, blank=True)  # from the enrichment
    provider = models.CharField(max_length=32)
    model = models.CharField(max_length=100)
    prompt_version = models.CharField(max_length=32)
    generated_at = models.DateTimeField(auto_now_add=True)
    attempts = models.PositiveSmallIntegerField(default=1)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal(0))
    validation_status = models.CharField(
        max_length=16,
        choices=ValidationStatus.choices,
        default=ValidationStatus.PENDING,
        db_index=True,
    )
    validation_failures = models.JSONField(default=list, blank=True)
    judge_verdict = models.CharField(max_length=32, choices=Verdict.choices, blank=True)
    judge_reasoning = models.TextField(blank=True)
    # the verdict's booleans, rubric (0-2 per check), grounding_percent, hard_failures and, when
    # the server's grounding bands changed it, the verdict the judge gave ("judged_verdict")
    judge_scores = models.JSONField(default=dict, blank=True)
    # corrections the judge made and the server applied: [{"field", "before", "after"}]
    corrections = models.JSONField(default=list, blank=True)
    judge_model = models.CharField(max_length=100, blank=True)
    judge_prompt_version = models.CharField(max_length=32, blank=True)
    validated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    validated_at = models.DateTimeField(null=True, blank=True)
    human_locked = models.BooleanField(default=False)

    class Meta:
        ordering = ["-generated_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["composition_hash", "cluster_type"],
                condition=Q(is_current=True),
                name="uniq_current_summary_per_composition",
            )
        ]
        indexes = [models.Index(fields=["composition_hash", "cluster_type", "is_current"])]
        verbose_name_plural = "cluster summaries"

    def __str__(self) -> str:
        return f"summary {self.pk} ({self.cluster_type}, {self.validation_status})"


class ValidationEvent(models.Model):
    """Audit of one status change of a summary: who (a user, the judge or the system), when, the
    states before and after, and a note."""

    class Source(models.TextChoices):
        JUDGE = "judge", "judge"
        HUMAN = "human", "human"
        SYSTEM = "system", "system"

    summary = models.ForeignKey(ClusterSummary, on_delete=models.CASCADE, related_name="events")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    source = models.CharField(max_length=16, choices=Source.choices)
    from_status = models.CharField(max_length=16, blank=True)
    to_status = models.CharField(max_length=16)
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.from_status or '-'} -> {self.to_status} ({self.source})"


class JobStatus(models.TextChoices):
    """Life cycle of a generation job."""

    PENDING = "pending", "pending"
    RUNNING = "running", "running"
    SUCCEEDED = "succeeded", "succeeded"
    FAILED = "failed", "failed"
    CANCELLED = "cancelled", "cancelled"


class GenerationJob(models.Model):
    """The summarisation of one clustering run. Totals are computed from ``SummaryTask`` rows by
    the finalize step; the rows, not broker messages, are the source of truth."""

    class Mode(models.TextChoices):
        REALTIME = "realtime", "realtime"
        BATCH = "batch", "batch"

    class Scope(models.TextChoices):
        RUN = "run", "every cluster of the run"
        CLUSTERS = "clusters", "selected clusters (regeneration)"

    run = models.ForeignKey(
        "clustering.ClusteringRun", on_delete=models.CASCADE, related_name="generation_jobs"
    )
    scope = models.CharField(max_length=16, choices=Scope.choices, default=Scope.RUN)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.REALTIME)
    status = models.CharField(
        max_length=16, choices=JobStatus.choices, default=JobStatus.PENDING, db_index=True
    )
    provider = models.CharField(max_length=32)
    model = models.CharField(max_length=100)
    judge_model = models.CharField(max_length=100)
    force = models.BooleanField(default=False)
    total = models.PositiveIntegerField(default=0)
    succeeded = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    progress_current = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    progress_message = models.CharField(max_length=300, blank=True)
    message = models.TextField(blank=True)  # one clear sentence when the job could not call
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=6, default=Decimal(0))
    # calls of unknown outcome (a worker died in flight) and the projected cost of those calls,
    # which cost_usd includes (USD): the part of cost_usd that is an estimate, not a bill
    unknown_calls = models.PositiveIntegerField(default=0)
    unknown_cost_usd = models.DecimalField(max_digits=14, decimal_places=6, default=Decimal(0))
    # batch mode: the whole job's cost extrapolated from the items processed so far (USD)
    projected_cost_usd = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)
    # batch mode: one driver at a time advances the job's batches, under a lease it renews
    # (BATCH_DRIVER_LEASE_SECONDS) and owns by a random token
    driver_lease_until = models.DateTimeField(null=True, blank=True)
    driver_lease_owner = models.CharField(max_length=32, blank=True)
    # times the reconciler re-sent the plan or start message of the pending job
    redrives = models.PositiveSmallIntegerField(default=0)
    # batch mode: the operator's --batch-size (requests per batch), for every batch of the job
    batch_size = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    deadline = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["run"], condition=Q(scope="run"), name="uniq_run_scope_job_per_run"
            )
        ]

    def __str__(self) -> str:
        return f"job {self.pk} for run {self.run_id} ({self.status})"


class TaskState(models.TextChoices):
    """State of one cluster's summarisation."""

    PENDING = "pending", "pending"
    RUNNING = "running", "running"
    SUCCEEDED = "succeeded", "succeeded"  # a summary stored, validated or pending review
    REJECTED = "rejected", "rejected"  # judged reject on every attempt; stored as rejected
    FAILED = "failed", "failed"  # no usable output (provider errors, invalid output)
    SKIPPED = "skipped", "skipped"  # cache hit, human lock, or no provider key


TERMINAL_STATES = (TaskState.SUCCEEDED, TaskState.REJECTED, TaskState.FAILED, TaskState.SKIPPED)


class SummaryTask(models.Model):
    """One cluster of a job: the unit of work and its source of truth.

    ``attempts`` counts generation attempts (at most 3); ``deliveries`` counts workers' claims
    and ``redrives`` the reconciler's re-sends of a stalled task (``RECONCILE_MAX_REDRIVES``);
    ``lease_until`` is when a worker's claim on a running task expires, so a redelivered message
    can take over a dead worker's task.
    """

    job = models.ForeignKey(GenerationJob, on_delete=models.CASCADE, related_name="tasks")
    cluster = models.ForeignKey("clustering.Cluster", on_delete=models.CASCADE)
    state = models.CharField(
        max_length=16, choices=TaskState.choices, default=TaskState.PENDING, db_index=True
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    deliveries = models.PositiveSmallIntegerField(default=0)  # worker claims
    redrives = models.PositiveSmallIntegerField(default=0)  # re-sent by the reconciler
    last_error = models.TextField(blank=True)
    summary = models.ForeignKey(
        ClusterSummary, on_delete=models.SET_NULL, null=True, blank=True, related_name="tasks"
    )
    lease_until = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    # batch mode: which step the task waits for, the draft awaiting the judge, and the feedback
    # (judge reasons, validation failures) that the next generation attempt must see
    phase = models.CharField(max_length=16, blank=True)  # "" | generate | judge
    in_batch = models.BooleanField(default=False)  # the batch driver, not a worker, owns it
    draft = models.JSONField(null=True, blank=True)
    feedback = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["job", "cluster__number"]
        constraints = [models.UniqueConstraint(fields=["job", "cluster"], name="uniq_job_cluster")]

    def __str__(self) -> str:
        return f"task {self.pk} (cluster {self.cluster_id}, {self.state})"


class LLMCall(models.Model):
    """One provider call (or batch item): what was asked, what it cost, how it ended.

    Tokens are as reported by the provider; ``cost_usd`` uses the price table in settings
    (``LLM_PRICES``, USD per million tokens); ``error_message`` never contains a key. A realtime
    call's row is written ``started`` before the request leaves and completed after; a row of a
    call whose worker died stays ``started`` until the reconciler marks it ``unknown`` with
    ``cost_usd = projected_cost_usd``.
    """

    class Kind(models.TextChoices):
        GENERATE = "generate", "generate"
        JUDGE = "judge", "judge"

    class Status(models.TextChoices):
        SUCCESS = "success", "success"
        VALIDATION_FAILED = "validation_failed", "validation failed"
        API_ERROR = "api_error", "API error"
        TIMEOUT = "timeout", "timeout"
        BLOCKED = "blocked", "blocked"
        # written before the request leaves; completed to one of the above when it is back
        STARTED = "started", "started (in flight)"
        # the worker died in flight: the provider may or may not have answered and billed it;
        # cost_usd holds projected_cost_usd (llm/services/reconcile.py marks these)
        UNKNOWN = "unknown", "unknown outcome"

    job = models.ForeignKey(
        GenerationJob, on_delete=models.CASCADE, null=True, blank=True, related_name="calls"
    )
    task = models.ForeignKey(
        SummaryTask, on_delete=models.CASCADE, null=True, blank=True, related_name="calls"
    )
    batch = models.ForeignKey(
        "ProviderBatch", on_delete=models.SET_NULL, null=True, blank=True, related_name="calls"
    )  # set for batch items, priced at the batch rate
    kind = models.CharField(max_length=16, choices=Kind.choices)
    attempt = models.PositiveSmallIntegerField(default=1)  # generation attempt of the task
    try_number = models.PositiveSmallIntegerField(default=1)  # retry of this call (transient)
    provider = models.CharField(max_length=32)
    model = models.CharField(max_length=100)
    model_version = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=24, choices=Status.choices, db_index=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    latency_seconds = models.FloatField(default=0.0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal(0))
    # upper bound written with the started row: the prompt's token estimate (characters / 4) at
    # the input price plus max_output_tokens at the output price (USD)
    projected_cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal(0))
    error_class = models.CharField(max_length=100, blank=True)
    error_message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.kind} call {self.pk} ({self.status})"


class ProviderBatch(models.Model):
    """One batch submitted (or about to be submitted) to a provider's batch API.

    The row is written, with a deterministic ``display_name`` (job, round, kind, chunk), BEFORE
    the provider is called; after a crash between the provider accepting the batch and
    ``provider_batch_id`` being saved, recovery finds the batch on the provider by that name
    instead of submitting again, so no batch is ever paid for twice.
    """

    class State(models.TextChoices):
        PREPARING = "preparing", "preparing"  # row written, provider not yet known to have it
        SUBMITTED = "submitted", "submitted"
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"
        CANCELLED = "cancelled", "cancelled"
        EXPIRED = "expired", "expired"
        TIMED_OUT = "timed_out", "timed out"  # BATCH_TIMEOUT passed; cancelled by us
        COLLECTED = "collected", "collected"  # results processed; nothing left to do

    job = models.ForeignKey(GenerationJob, on_delete=models.CASCADE, related_name="batches")
    provider = models.CharField(max_length=32)
    model = models.CharField(max_length=100)
    kind = models.CharField(max_length=16)  # generate | judge
    round = models.PositiveSmallIntegerField(default=1)
    chunk_index = models.PositiveIntegerField(default=0)
    display_name = models.CharField(max_length=128, unique=True)
    provider_batch_id = models.CharField(max_length=200, blank=True, db_index=True)
    state = models.CharField(
        max_length=16, choices=State.choices, default=State.PREPARING, db_index=True
    )
    provider_state = models.CharField(max_length=64, blank=True)
    request_count = models.PositiveIntegerField(default=0)
    completed_count = models.PositiveIntegerField(default=0)
    failed_count = models.PositiveIntegerField(default=0)
    submit_attempts = models.PositiveSmallIntegerField(default=0)
    # when the last submission attempt started (None once the provider answered it with an error)
    submit_started_at = models.DateTimeField(null=True, blank=True)
    poll_count = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    # the provider's machine-readable reason of a failed batch (e.g. token_limit_exceeded)
    error_code = models.CharField(max_length=64, blank=True)
    # results whose custom_id is not one of this batch's items (never stored)
    unknown_results = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    last_polled_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    collected_at = models.DateTimeField(null=True, blank=True)
    # when the batch's input and result files were deleted at the provider (None: kept or none)
    files_deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "provider batches"

    def __str__(self) -> str:
        return f"{self.provider} batch {self.display_name} ({self.state})"


class BatchItem(models.Model):
    """One request inside a provider batch, matched to its result by ``custom_id``."""

    class State(models.TextChoices):
        PENDING = "pending", "pending"
        DONE = "done", "done"  # a result or an item error was processed
        FALLBACK = "fallback", "sent to realtime"  # no result: redone by a realtime call
        MISSING = "missing", "missing"  # the finished batch had no result for it

    batch = models.ForeignKey(ProviderBatch, on_delete=models.CASCADE, related_name="items")
    task = models.ForeignKey(SummaryTask, on_delete=models.CASCADE, related_name="batch_items")
    custom_id = models.CharField(max_length=64, unique=True)
    kind = models.CharField(max_length=16)
    attempt = models.PositiveSmallIntegerField(default=1)
    state = models.CharField(
        max_length=16, choices=State.choices, default=State.PENDING, db_index=True
    )
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["batch", "id"]

    def __str__(self) -> str:
        return f"{self.custom_id} ({self.state})"


class Deployment(models.Model):
    """This deployment's identity: one row (pk 1) holding a random ``instance_id`` created once
    in the database, on first use (:func:`llm.services.deployment.deployment_identity`).

    Batch display names and custom ids carry it, so two databases sharing one provider key
    (staging and production, or a database recreated after a reset) never take each other's
    batches or results for their own.
    """

    SINGLETON_PK = 1

    id = models.PositiveSmallIntegerField(primary_key=True, default=SINGLETON_PK, editable=False)
    instance_id = models.CharField(max_length=16, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"deployment {self.instance_id}"
