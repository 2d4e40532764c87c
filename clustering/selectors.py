"""Reads: clusters of a run, their evidence terms and a dataset's licence notice."""

from __future__ import annotations

from collections import defaultdict

from django.db.models import QuerySet

from .models import Cluster, ClusteringRun, Dataset, TermDirection, TermEnrichment


def dataset_licence_notice(dataset: Dataset | None) -> str:
    """The licence notice shown beside ``dataset``'s content wherever it is shown (admin, report,
    API, ``cluster``): the dataset's own licence field (:attr:`Dataset.licence_notice`, its
    ``{release}`` placeholder filled in), "" for none. Never derived from matching text: the
    go-ndd dataset, whose source mentions hpo-ndd, shows its Gene Ontology (CC BY 4.0) and
    WikiPathways (CC0) notice, and the HPO datasets their HPO acknowledgement (the HPO
    Consortium asks for it wherever HPO content is displayed, https://hpo.jax.org)."""
    return dataset.licence_notice if dataset is not None else ""


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
    the lowest FDRs. A cluster stored before evidence selection existed (no ranked term) shows
    its lowest-FDR terms instead. One query for all clusters, one more for such old clusters."""
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
    unranked = [c.pk for c in clusters if c.pk not in chosen]
    if unranked:
        ranked_somewhere = set(
            TermEnrichment.objects.filter(
                cluster_id__in=unranked, evidence_rank__isnull=False
            ).values_list("cluster_id", flat=True)
        )
        old = [pk for pk in unranked if pk not in ranked_somewhere]
        fallback = TermEnrichment.objects.filter(cluster_id__in=old, direction=direction)
        for term in fallback.order_by("cluster_id", "fdr", "term_id"):
            if len(chosen[term.cluster_id]) < limit:
                chosen[term.cluster_id].append(term)
    return {c.pk: chosen.get(c.pk, []) for c in clusters}
