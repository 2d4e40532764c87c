"""Reads: clusters of a run and their display terms."""

from __future__ import annotations

from collections import defaultdict

from django.db.models import QuerySet

from clustering.domain.enrichment import DisplayTerm, display_terms_select

from .models import Cluster, ClusteringRun, TermEnrichment


def cluster_list(*, run: ClusteringRun) -> QuerySet[Cluster]:
    """Clusters of a run ordered by number."""
    return Cluster.objects.filter(run=run).order_by("number")


def cluster_display_terms(
    *, clusters: list[Cluster], limit: int = 3
) -> dict[int, list[TermEnrichment]]:
    """Cluster id -> up to ``limit`` non-redundant terms (a parent is pruned when a more specific
    descendant is listed), by FDR ascending. One query for all clusters."""
    by_cluster: dict[int, list[TermEnrichment]] = defaultdict(list)
    for term in TermEnrichment.objects.filter(cluster__in=clusters).order_by("cluster_id", "fdr"):
        by_cluster[term.cluster_id].append(term)
    chosen: dict[int, list[TermEnrichment]] = {}
    for cluster in clusters:
        terms = by_cluster.get(cluster.pk, [])
        lookup = {t.term_id: t for t in terms}
        ids = display_terms_select(
            [DisplayTerm(t.term_id, t.fdr, frozenset(t.ancestor_ids)) for t in terms], limit=limit
        )
        chosen[cluster.pk] = [lookup[i] for i in ids]
    return chosen
