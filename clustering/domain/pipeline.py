"""The whole clustering computation on an annotation table, without Django."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np

from .annotations import AnnotationTable
from .enrichment import (
    DEPLETED,
    ENRICHED,
    TermEnrichmentResult,
    cluster_enrichment,
    significance_cutoff,
)
from .evidence import TermBits, evidence_method_for, evidence_select
from .features import feature_matrix_build
from .hashing import composition_hash
from .leiden import leiden_partition
from .params import ClusteringParams
from .quality import EVIDENCE_FDR, Confidence, derived_confidence, specificity
from .similarity import KnnGraph, knn_graph_build
from .stability import modularity_null, signature_members, subsample_stability
from .traits import cluster_traits

#: progress(step_number, total_steps, message)
ProgressCallback = Callable[[int, int, str], None]
TOTAL_STEPS = 7
#: Signature members reported per cluster.
SIGNATURE_SIZE = 10


@dataclass(frozen=True)
class ClusterResult:
    """One cluster of a run.

    Attributes:
        number: 1-based, clusters ordered by size descending then by first member id.
        member_indices: sorted indices into the annotation table's entities.
        member_ids, member_symbols: aligned, sorted by entity id.
        composition_hash: see :func:`clustering.domain.hashing.composition_hash`.
        quality: ``internal_edge_fraction`` (share of the members' edge weight that stays inside
            the cluster, 1 = perfectly separated), ``mean_internal_similarity`` (mean cosine
            similarity over the cluster's internal edges), ``internal_edges`` (count).
        enrichment: significant terms of both directions (enriched first, then depleted), each
            sorted by p-value, with their evidence ranks (:mod:`clustering.domain.evidence`).
        stability: mean best-match Jaccard over subsamples (0..1), None when not measured.
        modularity_z: z-score of the cluster's modularity contribution against degree-preserving
            rewirings (labels fixed), None when not measured.
        specificity, specificity_term: best Dice coefficient of a shown enriched term and its id
            (:mod:`clustering.domain.quality`).
        derived_confidence: high / medium / low from stability and specificity.
        signature: (entity index, within-cluster strength) of the most central members.
        traits: inheritance and syndromicity figures (:func:`~.traits.cluster_traits`), {} when
            the dataset has no supplementary data.
    """

    number: int
    member_indices: list[int]
    member_ids: list[str]
    member_symbols: list[str]
    composition_hash: str
    quality: dict[str, float]
    enrichment: list[TermEnrichmentResult]
    stability: float | None = None
    modularity_z: float | None = None
    specificity: float = 0.0
    specificity_term: str = ""
    derived_confidence: Confidence = "low"
    signature: list[tuple[int, float]] = field(default_factory=list)
    traits: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ClusteringResult:
    """Everything a clustering run produces.

    ``timings`` are wall seconds per step; ``unclustered`` lists (entity_id, symbol) of entities in
    communities smaller than ``min_cluster_size`` (including isolated entities). ``quality``
    holds the run's modularity null model (``modularity_z``, ``null_mean``, ``null_sd``,
    ``null_repeats``) and the stability settings; ``evidence_method`` how evidence was selected
    per category (:meth:`~.evidence.EvidenceMethod.to_dict`).
    """

    clusters: list[ClusterResult]
    unclustered: list[tuple[str, str]]
    modularity: float
    n_features: int
    n_edges: int
    timings: dict[str, float] = field(default_factory=dict)
    quality: dict[str, Any] = field(default_factory=dict)
    evidence_method: dict[str, Any] = field(default_factory=dict)


def library_versions() -> dict[str, str]:
    """Versions of the libraries whose behaviour determines the clusters."""
    versions: dict[str, str] = {}
    for package in ("numpy", "scipy", "igraph", "leidenalg", "hpo3", "pyenrichr"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def _cluster_quality(graph: KnnGraph, membership: np.ndarray, label: int) -> dict[str, float]:
    src, dst = graph.edges[:, 0], graph.edges[:, 1]
    in_src = membership[src] == label
    in_dst = membership[dst] == label
    internal = in_src & in_dst
    touching = in_src | in_dst
    internal_weight = float(graph.weights[internal].sum())
    # each internal edge counts on both ends; each boundary edge once
    volume = 2 * internal_weight + float(graph.weights[touching & ~internal].sum())
    n_internal = int(internal.sum())
    return {
        "internal_edge_fraction": (2 * internal_weight / volume) if volume > 0 else 0.0,
        "mean_internal_similarity": (internal_weight / n_internal) if n_internal else 0.0,
        "internal_edges": float(n_internal),
    }


def _cluster_terms(
    table: AnnotationTable,
    indices: list[int],
    params: ClusteringParams,
    term_sizes: np.ndarray,
    bits: TermBits,
    method: Any,
) -> list[TermEnrichmentResult]:
    """Enriched and depleted terms of one cluster with their evidence ranks."""
    enriched = cluster_enrichment(
        table,
        indices,
        min_term_size=params.min_term_size,
        fdr_threshold=params.fdr_threshold,
        term_sizes=term_sizes,
        direction=ENRICHED,
    )
    depleted = cluster_enrichment(
        table,
        indices,
        min_term_size=params.min_term_size,
        fdr_threshold=params.fdr_threshold,
        term_sizes=term_sizes,
        direction=DEPLETED,
    )
    return evidence_select(
        table,
        indices,
        enriched + depleted,
        method=method,
        cutoff=significance_cutoff(enriched),
        bits=bits,
    )


def cluster_table(
    table: AnnotationTable,
    params: ClusteringParams,
    *,
    cluster_type: str,
    progress: ProgressCallback | None = None,
) -> ClusteringResult:
    """Features -> cosine k-NN graph -> Leiden -> clusters -> enrichment, depletion and evidence
    per cluster -> subsample stability -> modularity null model.

    Deterministic: the table is ordered by id and Leiden, the subsamples and the rewirings are
    seeded, so equal tables and parameters give equal clusters, composition hashes and figures.

    Raises:
        NoFeaturesError: no term passes the feature filters.
    """

    def report(step: int, message: str) -> None:
        if progress is not None:
            progress(step, TOTAL_STEPS, message)

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    report(0, "Building features")
    features = feature_matrix_build(
        table, min_term_size=params.min_term_size, max_term_fraction=params.max_term_fraction
    )
    timings["features"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    report(1, f"Building the {params.k}-NN graph of {table.n_entities} entities")
    graph = knn_graph_build(features.matrix, k=params.k)
    timings["graph"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    report(2, f"Leiden (resolution {params.resolution}, seed {params.seed})")
    partition = leiden_partition(graph, resolution=params.resolution, seed=params.seed)
    timings["leiden"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    report(3, "Enrichment, depletion and evidence selection")
    membership = np.asarray(partition.membership, dtype=np.int64)
    communities: dict[int, list[int]] = {}
    for index, label in enumerate(partition.membership):
        communities.setdefault(label, []).append(index)
    big = [m for m in communities.items() if len(m[1]) >= params.min_cluster_size]
    small = [m for m in communities.items() if len(m[1]) < params.min_cluster_size]
    big.sort(key=lambda item: (-len(item[1]), table.entity_ids[item[1][0]]))
    term_sizes = table.term_sizes()
    bits = TermBits(table)
    method = evidence_method_for(table, jaccard_threshold=params.evidence_jaccard)
    clusters: list[ClusterResult] = []
    for number, (label, indices) in enumerate(big, start=1):
        ids = [table.entity_ids[i] for i in indices]
        clusters.append(
            ClusterResult(
                number=number,
                member_indices=indices,
                member_ids=ids,
                member_symbols=[table.symbols[i] for i in indices],
                composition_hash=composition_hash(ids, cluster_type),
                quality=_cluster_quality(graph, membership, label),
                enrichment=_cluster_terms(table, indices, params, term_sizes, bits, method),
                signature=signature_members(graph, indices, limit=SIGNATURE_SIZE),
                traits=cluster_traits(table.traits, indices),
            )
        )
    unclustered = sorted(
        (table.entity_ids[i], table.symbols[i]) for _, indices in small for i in indices
    )
    timings["enrichment"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    report(4, f"Stability over {params.stability_repeats} subsamples")
    stability = subsample_stability(
        features.matrix,
        [c.member_indices for c in clusters],
        k=params.k,
        resolution=params.resolution,
        seed=params.seed,
        repeats=params.stability_repeats,
        fraction=params.stability_fraction,
    )
    timings["stability"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    report(5, f"Modularity null model ({params.null_repeats} rewirings)")
    labels = [label for label, _ in big]
    null = modularity_null(
        graph, partition.membership, labels, repeats=params.null_repeats, seed=params.seed
    )
    timings["null_model"] = time.perf_counter() - t0

    finished: list[ClusterResult] = []
    for cluster, label, score in zip(clusters, labels, stability.scores, strict=True):
        spec, spec_term = specificity(cluster.enrichment)
        evidence_terms = sum(
            1 for t in cluster.enrichment if t.direction == ENRICHED and t.fdr < EVIDENCE_FDR
        )
        finished.append(
            replace(
                cluster,
                stability=score,
                modularity_z=null.cluster_z.get(label),
                specificity=spec,
                specificity_term=spec_term,
                derived_confidence=derived_confidence(
                    stability=score, specificity_value=spec, evidence_terms=evidence_terms
                ),
            )
        )
    report(6, f"{len(finished)} clusters, {len(unclustered)} unclustered entities")
    return ClusteringResult(
        clusters=finished,
        unclustered=unclustered,
        modularity=partition.modularity,
        n_features=int(features.term_indices.size),
        n_edges=int(graph.edges.shape[0]),
        timings=timings,
        quality={
            "modularity_z": null.z,
            "null_mean": null.null_mean,
            "null_sd": null.null_sd,
            "null_repeats": null.repeats,
            "null_model": "degree-preserving rewiring (Maslov-Sneppen), labels fixed",
            "stability_repeats": stability.repeats,
            "stability_fraction": stability.fraction,
            "stability_method": "Hennig subset bootstrap: mean best-match Jaccard",
        },
        evidence_method=method.to_dict(),
    )
