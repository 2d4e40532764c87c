"""Cosine-similarity k-nearest-neighbour graph."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse


@dataclass(frozen=True)
class KnnGraph:
    """An undirected weighted graph on N vertices.

    Attributes:
        n_vertices: N.
        edges: int64 array (E, 2) with source < target, sorted lexicographically.
        weights: float64 (E,), cosine similarity of each edge in (0, 1].
    """

    n_vertices: int
    edges: np.ndarray
    weights: np.ndarray


def knn_graph_build(features: sparse.csr_matrix, *, k: int = 15, block: int = 1024) -> KnnGraph:
    """Symmetrised cosine k-nearest-neighbour graph.

    Each entity links to its ``k`` most similar other entities (cosine similarity of the weighted
    feature rows; ties broken by lower index); an edge exists if either end chose the other
    (union symmetrisation), weighted by their cosine similarity. Entities with an all-zero row get
    no edges. Rows are processed in blocks of ``block`` so memory is O(block x N).
    """
    n = features.shape[0]
    norms = np.sqrt(np.asarray(features.multiply(features).sum(axis=1)).ravel())
    safe = np.where(norms > 0, norms, 1.0)
    unit = sparse.csr_matrix(sparse.diags(1.0 / safe) @ features)
    unit_t = unit.T.tocsc()
    kk = min(k, max(n - 1, 0))
    sources: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    sims: list[np.ndarray] = []
    for start in range(0, n, block):
        stop = min(start + block, n)
        dense = (unit[start:stop] @ unit_t).toarray()
        rows = np.arange(stop - start)
        dense[rows, rows + start] = -np.inf  # no self-loops
        if kk == 0:
            continue
        # stable ordering: highest similarity first, then lowest index
        order = np.argsort(-dense, axis=1, kind="stable")[:, :kk]
        chosen = np.take_along_axis(dense, order, axis=1)
        valid = chosen > 0
        src = np.repeat(rows + start, kk).reshape(-1, kk)
        sources.append(src[valid])
        targets.append(order[valid])
        sims.append(chosen[valid])
    if not sources or sum(s.size for s in sources) == 0:
        return KnnGraph(n, np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.float64))
    src_all = np.concatenate(sources)
    dst_all = np.concatenate(targets)
    sim_all = np.concatenate(sims)
    lo = np.minimum(src_all, dst_all)
    hi = np.maximum(src_all, dst_all)
    pairs = np.stack([lo, hi], axis=1).astype(np.int64)
    unique, first = np.unique(pairs, axis=0, return_index=True)
    return KnnGraph(n, unique, sim_all[first].astype(np.float64))
