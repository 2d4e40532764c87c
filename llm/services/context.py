"""Build the ORM-free :class:`~llm.context.ClusterContext` of a stored cluster."""

from __future__ import annotations

from functools import lru_cache

from django.db.models import Prefetch

from clustering.models import Cluster, ClusteringRun, TermEnrichment
from llm.context import ClusterContext, TermRow


@lru_cache(maxsize=8)
def _run_symbols(run_id: int) -> frozenset[str]:
    """Every entity symbol of a run's dataset: all cluster members plus unclustered entities."""
    symbols: set[str] = set()
    members_of_clusters = (
        Cluster.objects.filter(run_id=run_id).values_list("members", flat=True).iterator(2000)
    )
    for members in members_of_clusters:  # streamed: a run may have 10,000 clusters
        symbols.update(m["symbol"] for m in members)
    unclustered = ClusteringRun.objects.values_list("unclustered", flat=True).get(pk=run_id)
    symbols.update(symbol for _, symbol in unclustered)
    return frozenset(symbols)


def context_terms_prefetch(lookup: str) -> Prefetch:
    """A prefetch of the clusters' terms at ``lookup`` (e.g. ``"cluster__terms"`` from a task)
    as :func:`cluster_context_build` reads them, so a chunk of clusters costs one terms query
    instead of one per cluster."""
    return Prefetch(
        lookup,
        queryset=TermEnrichment.objects.order_by("fdr", "term_id").defer(
            "overlap_members", "ancestor_ids"
        ),
    )


def cluster_context_build(*, cluster: Cluster) -> ClusterContext:
    """Snapshot of a cluster for the LLM steps: members, significant terms of both directions by
    FDR (with their evidence ranks), quality figures, traits and the dataset's symbols."""
    terms = tuple(
        TermRow(
            category=t.category,
            term_id=t.term_id,
            name=t.term_name,
            fdr=t.fdr,
            p_value=t.p_value,
            overlap=t.overlap,
            term_size=t.term_size,
            fold_enrichment=t.fold_enrichment,
            direction=t.direction,
            evidence_rank=t.evidence_rank,
            represents=t.represents,
            branches=tuple(t.branches or ()),
        )
        for t in (
            cluster.terms.all()  # prefetched by context_terms_prefetch, in the same order
            if "terms" in getattr(cluster, "_prefetched_objects_cache", {})
            else cluster.terms.order_by("fdr", "term_id").defer("overlap_members", "ancestor_ids")
        )
    )
    run = cluster.run
    return ClusterContext(
        cluster_type=run.cluster_type,  # type: ignore[arg-type]
        cluster_number=cluster.number,
        size=cluster.size,
        members=tuple((m["id"], m["symbol"]) for m in cluster.members),
        terms=terms,
        dataset_symbols=_run_symbols(run.pk),
        dataset_slug=run.dataset.slug,
        dataset_size=run.dataset.entity_count,
        stability=cluster.stability,
        modularity_z=cluster.modularity_z,
        specificity=cluster.specificity,
        derived_confidence=cluster.derived_confidence,
        signature=tuple(m["symbol"] for m in cluster.signature_members or []),
        traits=dict(cluster.traits or {}),
    )
