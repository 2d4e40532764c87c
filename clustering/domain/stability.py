"""Cluster quality that means something: subsample stability, a degree-preserving null model
for modularity, and signature members.

* **Stability** (Hennig 2007, "Cluster-wise assessment of cluster stability", Comput Stat Data
  Anal 52:258-271; the "subset" scheme of fpc::clusterboot): draw ``repeats`` subsamples of
  ``fraction`` of the entities without replacement, rebuild the cosine k-NN graph among them and
  run Leiden again (seed + 1 + repetition); a cluster's score in one subsample is the best
  Jaccard index between its members present in the subsample and any new community; its
  stability is the mean over the subsamples where it had members. Hennig's reading: <= 0.5
  dissolved, 0.6-0.75 a pattern whose membership is doubtful, >= 0.75 stable, >= 0.85 highly
  stable. Term weights are those of the full dataset (the features are not recomputed).
* **Null model** (Maslov & Sneppen 2002, Science 296:910; as used for clusters by SysNDD):
  ``repeats`` degree-preserving rewirings of the k-NN graph (igraph ``rewire``, 10 x E swap
  trials), the edge weights permuted onto the new edges. With the run's labels held fixed, the
  modularity of the partition and each cluster's contribution to it are computed on every null
  graph; z = (observed - null mean) / null standard deviation, per run and per cluster.
* **Signature members**: a cluster's members ranked by within-cluster weighted degree (the sum
  of their k-NN similarities to other members), highest first: the most central, most typical
  members.

Pure numpy / igraph / leidenalg; nothing here knows Django.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import igraph as ig
import numpy as np
from scipy import sparse

from .leiden import leiden_partition
from .similarity import KnnGraph, knn_graph_build, knn_graph_from_similarity

#: Hennig's reading of a mean best-match Jaccard index, highest band first (floor, label);
#: at or below 0.5 a cluster is "dissolved".
STABILITY_BANDS = (
    (0.85, "highly stable"),
    (0.75, "stable"),
    (0.6, "pattern, membership doubtful"),
    (0.5, "weak"),
)


def stability_band(value: float | None) -> str:
    """The band of :data:`STABILITY_BANDS` a stability figure falls in ("weak" needs more than
    0.5), "dissolved" below, "not measured" for None."""
    if value is None:
        return "not measured"
    for floor, label in STABILITY_BANDS:
        if value > floor or (value == floor and floor != 0.5):
            return label
    return "dissolved"


#: Above this many entities the subsample graphs are rebuilt from the features instead of from
#: one dense similarity matrix (N x N float64 = 8 N^2 bytes: 200 MiB at 5,000).
DENSE_SIMILARITY_LIMIT = 5000


@dataclass(frozen=True)
class StabilityResult:
    """Subsample stability of each cluster.

    Attributes:
        scores: per cluster (in the order given), the mean best-match Jaccard index (0..1), or
            None when no subsample contained any of its members.
        repeats: subsamples drawn.
        fraction: share of entities in each subsample.
        per_repeat: repeats x clusters matrix of best-match Jaccard indices (NaN where the
            cluster had no member in the subsample).
    """

    scores: list[float | None]
    repeats: int
    fraction: float
    per_repeat: np.ndarray


def _unit_rows(features: sparse.csr_matrix) -> sparse.csr_matrix:
    norms = np.sqrt(np.asarray(features.multiply(features).sum(axis=1)).ravel())
    safe = np.where(norms > 0, norms, 1.0)
    return sparse.csr_matrix(sparse.diags(1.0 / safe) @ features)


def _best_match_jaccard(
    clusters: Sequence[np.ndarray], sub: np.ndarray, labels: np.ndarray, n_total: int
) -> np.ndarray:
    """Best Jaccard index of each cluster (restricted to ``sub``) against the communities
    ``labels`` (aligned with ``sub``); NaN for a cluster with no member in ``sub``."""
    position = np.full(n_total, -1, dtype=np.int64)
    position[sub] = np.arange(sub.size)
    community_sizes = np.bincount(labels)
    out = np.full(len(clusters), np.nan)
    for i, members in enumerate(clusters):
        present = position[members]
        present = present[present >= 0]
        if present.size == 0:
            continue
        counts = np.bincount(labels[present], minlength=community_sizes.size)
        hit = np.flatnonzero(counts)
        jaccard = counts[hit] / (present.size + community_sizes[hit] - counts[hit])
        out[i] = float(jaccard.max())
    return out


def subsample_stability(
    features: sparse.csr_matrix,
    clusters: Sequence[Sequence[int]],
    *,
    k: int,
    resolution: float,
    seed: int,
    repeats: int,
    fraction: float = 0.8,
) -> StabilityResult:
    """Hennig's subset stability of ``clusters`` (lists of entity indices) under the same
    k-NN + Leiden method (see the module docstring).

    Args:
        features: the weighted feature matrix the clusters were found on, (N, F).
        clusters: member indices of each cluster.
        k, resolution, seed: the run's parameters; subsample r uses Leiden seed ``seed + 1 + r``
            and the subsamples are drawn with ``numpy.random.default_rng(seed)``.
        repeats: subsamples (0 gives all-None scores).
        fraction: share of entities per subsample, in (0, 1).

    Returns:
        a :class:`StabilityResult`. Deterministic for equal inputs.
    """
    n = features.shape[0]
    member_arrays = [np.asarray(sorted(c), dtype=np.int64) for c in clusters]
    per_repeat = np.full((max(repeats, 0), len(clusters)), np.nan)
    size = round(fraction * n)
    if repeats <= 0 or size < 2 or not clusters:
        return StabilityResult([None] * len(clusters), max(repeats, 0), fraction, per_repeat)
    unit = _unit_rows(features)
    dense = (unit @ unit.T).toarray() if n <= DENSE_SIMILARITY_LIMIT else None
    rng = np.random.default_rng(seed)
    for r in range(repeats):
        sub = np.sort(rng.choice(n, size=size, replace=False))
        if dense is not None:
            graph = knn_graph_from_similarity(dense[np.ix_(sub, sub)], k=k, overwrite=True)
        else:
            graph = knn_graph_build(features[sub], k=k)
        partition = leiden_partition(graph, resolution=resolution, seed=seed + 1 + r)
        labels = np.asarray(partition.membership, dtype=np.int64)
        per_repeat[r] = _best_match_jaccard(member_arrays, sub, labels, n)
    scores: list[float | None] = []
    for i in range(len(clusters)):
        column = per_repeat[:, i]
        column = column[~np.isnan(column)]
        scores.append(float(column.mean()) if column.size else None)
    return StabilityResult(scores, repeats, fraction, per_repeat)


@dataclass(frozen=True)
class NullModelResult:
    """Modularity against degree-preserving rewirings, labels held fixed.

    Attributes:
        modularity: observed weighted modularity (resolution 1) of the partition.
        null_mean, null_sd: over the null graphs.
        z: (modularity - null_mean) / null_sd, None when null_sd is 0 or repeats < 2.
        cluster_z: per label given, the same z-score of the cluster's contribution to
            modularity, None where undefined.
        repeats: null graphs drawn.
    """

    modularity: float
    null_mean: float | None
    null_sd: float | None
    z: float | None
    cluster_z: dict[int, float | None]
    repeats: int


def _contributions(
    edges: np.ndarray, weights: np.ndarray, membership: np.ndarray, labels: Sequence[int]
) -> tuple[float, dict[int, float]]:
    """Weighted modularity and each label's term of it: w_in(C)/m - (vol(C)/2m)^2."""
    total = float(weights.sum())
    if total <= 0:
        return 0.0, {label: 0.0 for label in labels}
    src, dst = edges[:, 0], edges[:, 1]
    n_labels = int(membership.max()) + 1
    inside = membership[src] == membership[dst]
    w_in = np.bincount(membership[src][inside], weights=weights[inside], minlength=n_labels)
    strength = np.bincount(src, weights=weights, minlength=membership.size) + np.bincount(
        dst, weights=weights, minlength=membership.size
    )
    volume = np.bincount(membership, weights=strength, minlength=n_labels)
    terms = w_in / total - (volume / (2 * total)) ** 2
    return float(terms.sum()), {label: float(terms[label]) for label in labels}


def modularity_null(
    graph: KnnGraph,
    membership: Sequence[int],
    labels: Sequence[int],
    *,
    repeats: int,
    seed: int,
) -> NullModelResult:
    """z-scores of the partition's modularity and of each cluster's contribution against
    ``repeats`` degree-preserving rewirings of ``graph`` (see the module docstring).

    Args:
        graph: the run's k-NN graph.
        membership: community label per vertex (the Leiden partition).
        labels: the labels to report per cluster (the reported clusters' communities).
        repeats: null graphs (0 or 1 give no z-scores).
        seed: seeds igraph's rewiring (a private ``random.Random``) and the weight permutation.
    """
    member = np.asarray(membership, dtype=np.int64)
    observed, observed_c = _contributions(graph.edges, graph.weights, member, labels)
    if repeats < 2 or graph.edges.shape[0] < 2:
        return NullModelResult(observed, None, None, None, dict.fromkeys(labels), max(repeats, 0))
    rng = np.random.default_rng(seed)
    ig.set_random_number_generator(random.Random(seed))
    try:
        base = ig.Graph(n=graph.n_vertices, edges=graph.edges.tolist(), directed=False)
        totals: list[float] = []
        per_label: dict[int, list[float]] = {label: [] for label in labels}
        for _ in range(repeats):
            null = base.copy()
            null.rewire(n=10 * null.ecount(), allowed_edge_types="simple")
            edges = np.asarray(null.get_edgelist(), dtype=np.int64)
            weights = rng.permutation(graph.weights)
            q, contributions = _contributions(edges, weights, member, labels)
            totals.append(q)
            for label in labels:
                per_label[label].append(contributions[label])
    finally:
        ig.set_random_number_generator(random)
    mean = float(np.mean(totals))
    sd = float(np.std(totals, ddof=1))

    def z(value: float, sample: list[float]) -> float | None:
        spread = float(np.std(sample, ddof=1))
        return (value - float(np.mean(sample))) / spread if spread > 0 else None

    return NullModelResult(
        modularity=observed,
        null_mean=mean,
        null_sd=sd,
        z=(observed - mean) / sd if sd > 0 else None,
        cluster_z={label: z(observed_c[label], per_label[label]) for label in labels},
        repeats=repeats,
    )


def signature_members(
    graph: KnnGraph, members: Sequence[int], *, limit: int = 10
) -> list[tuple[int, float]]:
    """The ``limit`` members of a cluster with the highest within-cluster weighted degree.

    Returns:
        (entity index, within-cluster strength) pairs, strongest first, ties by lower index.
    """
    inside = np.zeros(graph.n_vertices, dtype=bool)
    inside[np.asarray(members, dtype=np.int64)] = True
    src, dst = graph.edges[:, 0], graph.edges[:, 1]
    both = inside[src] & inside[dst]
    strength = np.bincount(src[both], weights=graph.weights[both], minlength=graph.n_vertices)
    strength += np.bincount(dst[both], weights=graph.weights[both], minlength=graph.n_vertices)
    ranked = sorted(members, key=lambda i: (-strength[i], i))[:limit]
    return [(int(i), float(strength[i])) for i in ranked]
