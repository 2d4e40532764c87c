"""The whole clustering computation on an annotation table, without Django."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version

import numpy as np

from .annotations import AnnotationTable
from .enrichment import TermEnrichmentResult, cluster_enrichment
from .features import feature_matrix_build
from .hashing import composition_hash
from .leiden import leiden_partition
from .params import ClusteringParams
from .similarity import KnnGraph, knn_graph_build

#: progress(step_number, total_steps, message)
ProgressCallback = Callable[[int, int, str], None]
TOTAL_STEPS = 5


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
        enrichment: significant terms, sorted by p-value.
    """

    number: int
    member_indices: list[int]
    member_ids: list[str]
    member_symbols: list[str]
    composition_hash: str
    quality: dict[str, float]
    enrichment: list[TermEnrichmentResult]


@dataclass(frozen=True)
class ClusteringResult:
    """Everything a clustering run produces.

    ``timings`` are wall seconds per step; ``unclustered`` lists (entity_id, symbol) of entities in
    communities smaller than ``min_cluster_size`` (including isolated entities).
    """

    clusters: list[ClusterResult]
    unclustered: list[tuple[str, str]]
    modularity: float
    n_features: int
    n_edges: int
    timings: dict[str, float] = field(default_factory=dict)


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


def cluster_table(
    table: AnnotationTable,
    params: ClusteringParams,
    *,
    cluster_type: str,
    progress: ProgressCallback | None = None,
) -> ClusteringResult:
    """Features -> cosine k-NN graph -> Leiden -> clusters -> enrichment per cluster.

    Deterministic: the table is ordered by id and Leiden is seeded, so equal tables and parameters
    give equal clusters and composition hashes.

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
    report(3, "Enrichment")
    membership = np.asarray(partition.membership, dtype=np.int64)
    communities: dict[int, list[int]] = {}
    for index, label in enumerate(partition.membership):
        communities.setdefault(label, []).append(index)
    big = [m for m in communities.items() if len(m[1]) >= params.min_cluster_size]
    small = [m for m in communities.items() if len(m[1]) < params.min_cluster_size]
    big.sort(key=lambda item: (-len(item[1]), table.entity_ids[item[1][0]]))
    term_sizes = table.term_sizes()
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
                enrichment=cluster_enrichment(
                    table,
                    indices,
                    min_term_size=params.min_term_size,
                    fdr_threshold=params.fdr_threshold,
                    term_sizes=term_sizes,
                ),
            )
        )
    unclustered = sorted(
        (table.entity_ids[i], table.symbols[i]) for _, indices in small for i in indices
    )
    timings["enrichment"] = time.perf_counter() - t0
    report(4, f"{len(clusters)} clusters, {len(unclustered)} unclustered entities")
    return ClusteringResult(
        clusters=clusters,
        unclustered=unclustered,
        modularity=partition.modularity,
        n_features=int(features.term_indices.size),
        n_edges=int(graph.edges.shape[0]),
        timings=timings,
    )
