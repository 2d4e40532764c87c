"""Reads: clusters of a run and their evidence terms."""

from __future__ import annotations

from collections import defaultdict

from django.db.models import QuerySet

from .models import Cluster, ClusteringRun, TermDirection, TermEnrichment


def cluster_list(*, run: ClusteringRun) -> QuerySet[Cluster]:
    """Clusters of a run ordered by number."""
    return Cluster.objects.filter(run=run).order_by("number")


def evidence_terms(
    *, cluster: Cluster, direction: str = TermDirection.ENRICHED
) -> QuerySet[TermEnrichment]:
    """The cluster's shown (non-redundant) terms of one direction, in evidence order: by rank
    within each category, categories interleaved (rank 1 of every category first)."""
    return TermEnrichment.objects.filter(
        cluster=cluster, direction=direction, evidence_rank__isnull=False
    ).order_by("evidence_rank", "fdr", "category", "term_id")


def cluster_display_terms(
    *, clusters: list[Cluster], limit: int = 3, direction: str = TermDirection.ENRICHED
) -> dict[int, list[TermEnrichment]]:
    """Cluster id -> its first ``limit`` evidence terms of ``direction`` (see
    :func:`evidence_terms`): the non-redundant, specific terms chosen at clustering time, not
    the lowest FDRs. One query for all clusters."""
    chosen: dict[int, list[TermEnrichment]] = defaultdict(list)
    rows = TermEnrichment.objects.filter(
        cluster__in=clusters,
        direction=direction,
        evidence_rank__isnull=False,
        evidence_rank__lte=limit,
    ).order_by("cluster_id", "evidence_rank", "fdr", "category", "term_id")
    for term in rows:
        if len(chosen[term.cluster_id]) < limit:
            chosen[term.cluster_id].append(term)
    return {c.pk: chosen.get(c.pk, []) for c in clusters}
