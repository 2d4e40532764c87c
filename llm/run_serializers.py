"""Serializers of the REST API for clustering runs and clusters, with what the ``llm`` app adds
to them: a run's summarisation job (stage, progress, totals, tokens, cost: see
:func:`llm.selectors.run_state`) and a cluster's current summary. The serializers of the
clustering data itself (datasets, terms, members, run parameters) are in
:mod:`clustering.serializers`.

List serializers take precomputed lookups from the serializer context so a page costs a fixed
number of queries:

* ``display_terms``: cluster id -> list of ``TermEnrichment`` (``cluster_display_terms``);
* ``summaries``: cluster id -> current ``ClusterSummary`` the reader may see.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from clustering.domain.params import CLUSTER_TYPES
from clustering.models import Cluster, ClusteringRun
from clustering.serializers import (
    DatasetBriefSerializer,
    DatasetSerializer,
    MemberSerializer,
    RunParamsField,
    TermBriefSerializer,
    TermEnrichmentSerializer,
)
from llm.models import ClusterSummary, GenerationJob
from llm.providers.registry import PROVIDERS
from llm.selectors import RunState, run_job, run_state
from llm.serializers import (
    ClusterSummarySerializer,
    ProgressSerializer,
    StrictInputSerializer,
    SummaryBriefSerializer,
    TokensSerializer,
    TotalsSerializer,
)


class RunJobBriefSerializer(serializers.ModelSerializer):
    """The run's summarisation job, in a run."""

    url = serializers.HyperlinkedIdentityField(view_name="api:job-detail")
    status = serializers.CharField(
        read_only=True, help_text="pending | running | succeeded | failed | cancelled"
    )
    mode = serializers.CharField(read_only=True, help_text="realtime | batch")

    class Meta:
        model = GenerationJob
        fields = ["id", "url", "status", "mode", "provider", "model", "judge_model", "message"]
        read_only_fields = fields


class ClusteringRunSerializer(serializers.ModelSerializer):
    """A clustering run and its summarisation.

    ``status`` is the clustering's (pending | running | succeeded | failed | cancelled);
    ``stage`` the whole pipeline's (pending | clustering | clustered | summarising | succeeded |
    failed | cancelled); ``progress`` the job's while summarising, else the run's; ``totals``,
    ``tokens`` and ``cost_usd`` come from the run-scope job. ``error`` is the first line of the
    failure, if any.
    """

    url = serializers.HyperlinkedIdentityField(view_name="api:run-detail")
    clusters_url = serializers.HyperlinkedIdentityField(
        view_name="api:run-clusters", lookup_url_kwarg="run_pk"
    )
    dataset = DatasetBriefSerializer(read_only=True)
    cluster_type = serializers.CharField(read_only=True, help_text="phenotype | functional")
    status = serializers.CharField(
        read_only=True, help_text="pending | running | succeeded | failed | cancelled"
    )
    stage = serializers.SerializerMethodField()
    progress = serializers.SerializerMethodField()
    totals = serializers.SerializerMethodField()
    tokens = serializers.SerializerMethodField()
    cost_usd = serializers.SerializerMethodField()
    job = serializers.SerializerMethodField()
    cluster_count = serializers.SerializerMethodField()
    unclustered_count = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()

    class Meta:
        model = ClusteringRun
        fields = [
            "id",
            "url",
            "clusters_url",
            "dataset",
            "cluster_type",
            "params",
            "status",
            "stage",
            "progress",
            "totals",
            "tokens",
            "cost_usd",
            "job",
            "cluster_count",
            "unclustered_count",
            "modularity",
            "quality",
            "evidence_method",
            "n_features",
            "n_edges",
            "library_versions",
            "timings",
            "error",
            "attempts",
            "redrives",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    def _state(self, run: ClusteringRun) -> RunState:
        # computed once per run and serializer (several fields read it)
        cache: dict[int, RunState] = self.context.setdefault("_run_states", {})
        if run.pk not in cache:
            cache[run.pk] = run_state(run=run, job=run_job(run=run))
        return cache[run.pk]

    def get_stage(self, run: ClusteringRun) -> str:
        return self._state(run).stage

    @extend_schema_field(ProgressSerializer)
    def get_progress(self, run: ClusteringRun) -> dict[str, Any]:
        state = self._state(run)
        return {
            "current": state.progress_current,
            "total": state.progress_total,
            "message": state.progress_message,
        }

    @extend_schema_field(TotalsSerializer)
    def get_totals(self, run: ClusteringRun) -> dict[str, int]:
        state = self._state(run)
        return {
            "total": state.total,
            "succeeded": state.succeeded,
            "failed": state.failed,
            "skipped": state.skipped,
            "rejected": state.rejected,
        }

    @extend_schema_field(TokensSerializer)
    def get_tokens(self, run: ClusteringRun) -> dict[str, int]:
        state = self._state(run)
        return {"input": state.input_tokens, "output": state.output_tokens}

    @extend_schema_field(serializers.DecimalField(max_digits=14, decimal_places=6))
    def get_cost_usd(self, run: ClusteringRun) -> str:
        return f"{self._state(run).cost_usd:.6f}"

    @extend_schema_field(RunJobBriefSerializer(allow_null=True))
    def get_job(self, run: ClusteringRun) -> dict[str, Any] | None:
        job = run_job(run=run)
        if job is None:
            return None
        return dict(RunJobBriefSerializer(job, context=self.context).data)

    def get_cluster_count(self, run: ClusteringRun) -> int:
        count = getattr(run, "cluster_count", None)
        return int(count) if count is not None else run.clusters.count()

    def get_unclustered_count(self, run: ClusteringRun) -> int:
        return len(run.unclustered or [])

    def get_error(self, run: ClusteringRun) -> str:
        return run.error.splitlines()[0] if run.error else ""


class RunCreateSerializer(StrictInputSerializer):
    """Input of ``POST /api/runs/``.

    ``params`` holds the clustering parameters (bounds: ``clustering.domain.bounds``); missing
    ones take their defaults; errors are keyed ``params.<name>``. ``cluster_type`` is the
    dataset's kind (the default; another is refused), ``provider`` defaults to
    ``LLM_PROVIDER``; ``force`` regenerates cached summaries (a curator's decision is kept).
    """

    dataset = serializers.CharField(max_length=64, help_text="Dataset slug, e.g. hpo-ndd.")
    cluster_type = serializers.ChoiceField(choices=list(CLUSTER_TYPES), required=False)
    params = RunParamsField(required=False, default=dict)
    force = serializers.BooleanField(required=False, default=False)
    provider = serializers.ChoiceField(choices=list(PROVIDERS), required=False)


class RunRerunSerializer(StrictInputSerializer):
    """Input of ``POST /api/runs/{id}/rerun/`` (both optional)."""

    force = serializers.BooleanField(required=False, default=False)
    provider = serializers.ChoiceField(choices=list(PROVIDERS), required=False)


class ClusterListSerializer(serializers.ModelSerializer):
    """A cluster in a run's cluster list: size, member symbols, up to three non-redundant top
    terms and the current summary of its composition (null when none the reader may see)."""

    url = serializers.HyperlinkedIdentityField(view_name="api:cluster-detail")
    cluster_type = serializers.SerializerMethodField()
    member_symbols = serializers.ListField(child=serializers.CharField(), read_only=True)
    top_terms = serializers.SerializerMethodField()
    summary = serializers.SerializerMethodField()

    class Meta:
        model = Cluster
        fields = [
            "id",
            "url",
            "run",
            "number",
            "size",
            "cluster_type",
            "composition_hash",
            "member_symbols",
            "stability",
            "derived_confidence",
            "top_terms",
            "summary",
        ]
        read_only_fields = fields

    def get_cluster_type(self, cluster: Cluster) -> str:
        return cluster.run.cluster_type

    @extend_schema_field(TermBriefSerializer(many=True))
    def get_top_terms(self, cluster: Cluster) -> list[dict[str, Any]]:
        terms = self.context.get("display_terms", {}).get(cluster.pk, [])
        return list(TermBriefSerializer(terms, many=True).data)

    @extend_schema_field(SummaryBriefSerializer(allow_null=True))
    def get_summary(self, cluster: Cluster) -> dict[str, Any] | None:
        summary: ClusterSummary | None = self.context.get("summaries", {}).get(cluster.pk)
        if summary is None:
            return None
        return dict(SummaryBriefSerializer(summary, context=self.context).data)


class ClusterDetailSerializer(ClusterListSerializer):
    """A cluster with its members, quality figures, every enriched term (FDR < the run's
    threshold, by p-value), its dataset's release and licence, and the current summary of its
    composition with verdict, reasoning, review state, confidences, model, prompt version and
    date (null when there is none the reader may see)."""

    run_url = serializers.HyperlinkedRelatedField(
        source="run", view_name="api:run-detail", read_only=True
    )
    dataset = serializers.SerializerMethodField()
    members = MemberSerializer(many=True, read_only=True)
    terms = TermEnrichmentSerializer(many=True, read_only=True)
    evidence = serializers.SerializerMethodField(
        help_text="The shown enriched terms in evidence order (what the prompts and the judge "
        "see), categories interleaved by rank."
    )
    depleted = serializers.SerializerMethodField(
        help_text="The shown depleted terms in evidence order."
    )
    signature_members = serializers.ListField(
        child=serializers.DictField(), read_only=True, help_text="[{id, symbol, strength}]"
    )
    traits = serializers.DictField(
        read_only=True, help_text="Mode-of-inheritance and syndromicity figures ({} when none)."
    )

    class Meta(ClusterListSerializer.Meta):
        fields = [
            *[f for f in ClusterListSerializer.Meta.fields if f != "member_symbols"],
            "run_url",
            "dataset",
            "members",
            "quality",
            "modularity_z",
            "specificity",
            "specificity_term",
            "signature_members",
            "traits",
            "evidence",
            "depleted",
            "terms",
        ]
        read_only_fields = fields

    def _shown(self, cluster: Cluster, direction: str) -> list[dict[str, Any]]:
        rows = [t for t in cluster.terms.all() if t.direction == direction and t.evidence_rank]
        rows.sort(key=lambda t: (t.evidence_rank or 0, t.fdr, t.category, t.term_id))
        return list(TermEnrichmentSerializer(rows, many=True, context=self.context).data)

    @extend_schema_field(TermEnrichmentSerializer(many=True))
    def get_evidence(self, cluster: Cluster) -> list[dict[str, Any]]:
        return self._shown(cluster, "enriched")

    @extend_schema_field(TermEnrichmentSerializer(many=True))
    def get_depleted(self, cluster: Cluster) -> list[dict[str, Any]]:
        return self._shown(cluster, "depleted")

    @extend_schema_field(DatasetSerializer)
    def get_dataset(self, cluster: Cluster) -> dict[str, Any]:
        return dict(DatasetSerializer(cluster.run.dataset, context=self.context).data)

    @extend_schema_field(ClusterSummarySerializer(allow_null=True))
    def get_summary(self, cluster: Cluster) -> dict[str, Any] | None:
        summary: ClusterSummary | None = self.context.get("summaries", {}).get(cluster.pk)
        if summary is None:
            return None
        return dict(ClusterSummarySerializer(summary, context=self.context).data)
