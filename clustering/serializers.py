"""Serializers of clustering data for the REST API: datasets, term enrichment, members and the
schema of a run's ``params``.

They know nothing of summaries: the run and cluster serializers that add a run's summarisation
job and a cluster's current summary are in :mod:`llm.run_serializers` (the ``llm`` app depends
on ``clustering``, never the other way).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from clustering.domain.bounds import ALGORITHMS, PARAM_BOUNDS
from clustering.models import Dataset, TermEnrichment
from clustering.selectors import dataset_licence_notice


class DatasetSerializer(serializers.ModelSerializer):
    """A dataset with its provenance: source, release and the licence notice that must be shown
    wherever its content is (e.g. the HPO acknowledgement)."""

    kind = serializers.CharField(read_only=True, help_text="phenotype | functional")
    licence = serializers.SerializerMethodField()

    class Meta:
        model = Dataset
        fields = [
            "slug",
            "name",
            "kind",
            "builtin",
            "source",
            "release",
            "licence",
            "entity_count",
            "term_count",
        ]
        read_only_fields = fields

    def get_licence(self, dataset: Dataset) -> str:
        return dataset_licence_notice(dataset)


class DatasetBriefSerializer(serializers.ModelSerializer):
    """A dataset in run lists."""

    class Meta:
        model = Dataset
        fields = ["slug", "name", "release"]
        read_only_fields = fields


class TermEnrichmentSerializer(serializers.ModelSerializer):
    """A significantly over- (``direction`` enriched) or under-represented (depleted) term of a
    cluster: one-sided hypergeometric p-value of its direction, Benjamini-Hochberg FDR within the
    cluster and direction, fold enrichment (k/n)/(K/N), coverage k/n, overlapping member symbols.
    ``evidence_rank`` is its rank among the cluster's non-redundant evidence of its category and
    direction (null when hidden as redundant; ``hidden_by`` then names the shown term that stands
    for it); ``represents`` counts the significant terms a shown term stands for."""

    overlap_members = serializers.ListField(child=serializers.CharField(), read_only=True)
    ancestor_ids = serializers.ListField(
        child=serializers.CharField(),
        read_only=True,
        help_text="Significant ancestor terms of this term in the same cluster (HPO DAG).",
    )
    branches = serializers.ListField(
        child=serializers.CharField(),
        read_only=True,
        help_text="Top-level ontology branches of the term (HPO); empty without a DAG.",
    )
    coverage = serializers.SerializerMethodField(
        help_text="Share of the cluster's members annotated to the term (0..1)."
    )

    class Meta:
        model = TermEnrichment
        fields = [
            "category",
            "term_id",
            "term_name",
            "direction",
            "overlap",
            "term_size",
            "coverage",
            "p_value",
            "fdr",
            "fold_enrichment",
            "elim_p_value",
            "evidence_rank",
            "represents",
            "hidden_by",
            "branches",
            "overlap_members",
            "ancestor_ids",
        ]
        read_only_fields = fields

    def get_coverage(self, term: TermEnrichment) -> float:
        size = term.cluster.size  # the prefetch sets the parent on each term
        return round(term.overlap / size, 4) if size else 0.0


class TermBriefSerializer(serializers.ModelSerializer):
    """An evidence term (non-redundant, in evidence order) of a cluster."""

    class Meta:
        model = TermEnrichment
        fields = [
            "category",
            "term_id",
            "term_name",
            "direction",
            "overlap",
            "fdr",
            "fold_enrichment",
            "evidence_rank",
            "represents",
        ]
        read_only_fields = fields


class MemberSerializer(serializers.Serializer):
    """A cluster member: identifier and symbol."""

    id = serializers.CharField()
    symbol = serializers.CharField()


def run_params_schema() -> dict[str, Any]:
    """OpenAPI schema of a run's ``params``, built from the bounds table
    (:data:`clustering.domain.bounds.PARAM_BOUNDS`)."""
    properties: dict[str, Any] = {name: b.openapi() for name, b in PARAM_BOUNDS.items()}
    properties["algorithm"] = {"type": "string", "enum": list(ALGORITHMS)}
    return {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
        "description": (
            "Clustering parameters; a missing one takes its default. Bounds marked 'the "
            "dataset's number of entities' are checked against the chosen dataset. Errors are "
            "keyed by path, e.g. `params.k`."
        ),
    }


@extend_schema_field(run_params_schema())
class RunParamsField(serializers.DictField):
    """``params`` of ``POST /api/runs/``: a JSON object, checked by ``ClusteringParams``."""
