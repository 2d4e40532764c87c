"""Datasets, clustering runs, clusters and their term enrichment (see DESIGN.md, data model)."""

from __future__ import annotations

from django.db import models


class ClusterType(models.TextChoices):
    """What the clusters are about; part of the composition hash (cache key)."""

    PHENOTYPE = "phenotype", "phenotype"
    FUNCTIONAL = "functional", "functional"


class Dataset(models.Model):
    """An entity x term table: built in (loaded from an installed package) or imported by a user
    (rows in :class:`DatasetAnnotation`). ``release`` and ``licence`` travel with every display."""

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=ClusterType.choices)
    builtin = models.BooleanField(default=False)
    source = models.TextField(blank=True)
    release = models.CharField(max_length=200, blank=True)
    licence = models.TextField(blank=True)
    entity_count = models.PositiveIntegerField(default=0)
    term_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    @property
    def licence_notice(self) -> str:
        """The licence notice to show beside this dataset's content: its own ``licence``
        field (never inferred from its name or source), with a ``{release}`` placeholder of a
        built-in notice filled in; "" when no licence text is recorded."""
        if not self.licence:
            return ""
        return self.licence.replace("{release}", self.release or "release not yet loaded")


class DatasetAnnotation(models.Model):
    """One (entity, term) pair of a user-imported dataset."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="annotations")
    entity_id = models.CharField(max_length=128)
    symbol = models.CharField(max_length=128)
    term_id = models.CharField(max_length=128)
    term_name = models.CharField(max_length=500)
    category = models.CharField(max_length=64)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["dataset", "entity_id", "term_id"], name="uniq_dataset_entity_term"
            )
        ]

    def __str__(self) -> str:
        return f"{self.dataset_id}:{self.entity_id}-{self.term_id}"


class RunStatus(models.TextChoices):
    """Life cycle of a clustering run."""

    PENDING = "pending", "pending"
    RUNNING = "running", "running"
    SUCCEEDED = "succeeded", "succeeded"
    FAILED = "failed", "failed"
    CANCELLED = "cancelled", "cancelled"


ACTIVE_RUN_STATES = (RunStatus.PENDING, RunStatus.RUNNING)


class ClusteringRun(models.Model):
    """One clustering of a dataset with given parameters; progress is written while it runs."""

    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="runs")
    cluster_type = models.CharField(max_length=16, choices=ClusterType.choices)
    params = models.JSONField(default=dict)
    library_versions = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=16, choices=RunStatus.choices, default=RunStatus.PENDING, db_index=True
    )
    progress_current = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    progress_message = models.CharField(max_length=300, blank=True)
    modularity = models.FloatField(null=True, blank=True)
    n_features = models.PositiveIntegerField(null=True, blank=True)
    n_edges = models.PositiveIntegerField(null=True, blank=True)
    unclustered = models.JSONField(default=list, blank=True)  # [[entity_id, symbol], ...]
    timings = models.JSONField(default=dict, blank=True)  # step -> wall seconds
    # run-level modularity null model and stability settings (clustering.domain.pipeline)
    quality = models.JSONField(default=dict, blank=True)
    # how each category's evidence was selected (clustering.domain.evidence)
    evidence_method = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # times the reconciler re-sent the run's pipeline after it stalled (RECONCILE_MAX_REDRIVES)
    redrives = models.PositiveSmallIntegerField(default=0)
    # what the run was asked to do after clustering, read back by every (re-)delivery of the
    # chain: {"provider", "model", "judge_model", "force"}, written by the summary pipeline that
    # starts the run; empty for runs created without it (their plan step uses the settings)
    intent = models.JSONField(default=dict, blank=True)
    # renewed every few seconds while a worker computes the run (clustering.liveness); the
    # reconciler measures a running run's stall from it
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # Celery id of the task computing the run, so that a cancel can revoke it
    task_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["dataset", "cluster_type", "status"])]

    def __str__(self) -> str:
        return f"run {self.pk} ({self.dataset_id}, {self.cluster_type}, {self.status})"


class Cluster(models.Model):
    """A cluster of a run. ``members`` is a list of {"id", "symbol"} sorted by id.

    Quality (clustering.domain.stability / quality): ``stability`` the mean best-match Jaccard
    over subsamples (Hennig; None when not measured), ``modularity_z`` the z-score of its
    modularity contribution against degree-preserving rewirings, ``specificity`` the Dice
    coefficient of its best shown evidence term (``specificity_term``), ``derived_confidence``
    high / medium / low from both; ``signature_members`` [{"id", "symbol", "strength"}] by
    within-cluster weighted degree; ``traits`` the inheritance and syndromicity figures.
    """

    run = models.ForeignKey(ClusteringRun, on_delete=models.CASCADE, related_name="clusters")
    number = models.PositiveIntegerField()
    size = models.PositiveIntegerField()
    members = models.JSONField(default=list)
    composition_hash = models.CharField(max_length=64, db_index=True)
    quality = models.JSONField(default=dict, blank=True)
    stability = models.FloatField(null=True, blank=True)
    modularity_z = models.FloatField(null=True, blank=True)
    specificity = models.FloatField(null=True, blank=True)
    specificity_term = models.CharField(max_length=128, blank=True)
    derived_confidence = models.CharField(max_length=16, blank=True)
    signature_members = models.JSONField(default=list, blank=True)
    traits = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["run", "number"]
        constraints = [
            models.UniqueConstraint(fields=["run", "number"], name="uniq_run_cluster_number")
        ]

    def __str__(self) -> str:
        return f"cluster {self.number} of run {self.run_id} ({self.size} members)"

    @property
    def member_symbols(self) -> list[str]:
        """Symbols in member order."""
        return [m["symbol"] for m in self.members]


class TermDirection(models.TextChoices):
    """Over- or under-represented in the cluster."""

    ENRICHED = "enriched", "enriched"
    DEPLETED = "depleted", "depleted"


class TermEnrichment(models.Model):
    """A significantly over- or under-represented term of a cluster (one-sided hypergeometric
    test of its ``direction``, BH FDR). ``evidence_rank`` is set on the non-redundant terms
    shown as the cluster's evidence (1 = first, per category and direction), null on the terms
    hidden as redundant (``hidden_by`` names the shown term that stands for them);
    ``represents`` counts the significant terms a shown term stands for, itself included."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="terms")
    category = models.CharField(max_length=64)
    term_id = models.CharField(max_length=128)
    term_name = models.CharField(max_length=500)
    overlap = models.PositiveIntegerField()
    term_size = models.PositiveIntegerField()
    p_value = models.FloatField()
    fdr = models.FloatField()
    fold_enrichment = models.FloatField()
    overlap_members = models.JSONField(default=list)  # symbols
    ancestor_ids = models.JSONField(default=list)  # significant ancestors in this cluster
    direction = models.CharField(
        max_length=16, choices=TermDirection.choices, default=TermDirection.ENRICHED
    )
    elim_p_value = models.FloatField(null=True, blank=True)
    evidence_rank = models.PositiveIntegerField(null=True, blank=True)
    represents = models.PositiveIntegerField(default=1)
    hidden_by = models.CharField(max_length=128, blank=True)
    branches = models.JSONField(default=list, blank=True)  # top-level ontology branch names

    class Meta:
        ordering = ["cluster", "direction", "p_value", "term_id"]
        indexes = [
            models.Index(fields=["cluster", "fdr"]),
            models.Index(fields=["cluster", "direction", "evidence_rank"]),
        ]

    def __str__(self) -> str:
        return f"{self.term_id} ({self.direction}, FDR {self.fdr:.2g})"
