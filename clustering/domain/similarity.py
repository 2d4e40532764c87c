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


def _top_k(dense: np.ndarray, offset: int, kk: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sources, targets, similarities) of each row's ``kk`` most similar columns.

    ``dense`` holds rows ``offset .. offset + len(dense)`` of a similarity matrix with the
    diagonal already set to -inf; only positive similarities make edges; ties go to the lower
    column index, exactly as a stable sort of the negated similarities would order them.
    ``np.argpartition`` finds each row's kk best in O(N); rows whose kk-th value is tied with
    a value outside the kk (where the partition's choice is arbitrary) are ordered with the
    stable sort instead.
    """
    n_rows, n_cols = dense.shape
    rows = np.arange(n_rows)
    negated = -dense
    if kk < n_cols:
        part = np.argpartition(negated, kk - 1, axis=1)[:, :kk]
        boundary = np.take_along_axis(negated, part, axis=1).max(axis=1)
        tied = (negated <= boundary[:, None]).sum(axis=1) > kk
    else:
        part = np.tile(np.arange(n_cols), (n_rows, 1))
        tied = np.zeros(n_rows, dtype=bool)
    values = np.take_along_axis(negated, part, axis=1)
    # order the kk chosen columns by (value, column index): a lexsort within each row
    within = np.lexsort((part, values), axis=1)
    order = np.take_along_axis(part, within, axis=1)
    if tied.any():
        order[tied] = np.argsort(negated[tied], axis=1, kind="stable")[:, :kk]
    chosen = np.take_along_axis(dense, order, axis=1)
    valid = chosen > 0
    src = np.repeat(rows + offset, kk).reshape(-1, kk)
    return src[valid], order[valid], chosen[valid]


def _symmetrised(
    n: int, sources: list[np.ndarray], targets: list[np.ndarray], sims: list[np.ndarray]
) -> KnnGraph:
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
    if kk == 0:
        return _symmetrised(n, sources, targets, sims)
    for start in range(0, n, block):
        stop = min(start + block, n)
        dense = (unit[start:stop] @ unit_t).toarray()
        rows = np.arange(stop - start)
        dense[rows, rows + start] = -np.inf  # no self-loops
        src, dst, sim = _top_k(dense, start, kk)
        sources.append(src)
        targets.append(dst)
        sims.append(sim)
    return _symmetrised(n, sources, targets, sims)


def knn_graph_from_similarity(
    similarity: np.ndarray, *, k: int = 15, overwrite: bool = False
) -> KnnGraph:
    """The same symmetrised k-NN graph as :func:`knn_graph_build`, from a dense (N, N) cosine
    similarity matrix (e.g. a subsample's block of a precomputed one). ``similarity`` is left
    unchanged unless ``overwrite`` (its diagonal is then set to -inf in place)."""
    n = similarity.shape[0]
    kk = min(k, max(n - 1, 0))
    if kk == 0:
        return _symmetrised(n, [], [], [])
    dense = similarity if overwrite else np.array(similarity, dtype=np.float64, copy=True)
    np.fill_diagonal(dense, -np.inf)
    src, dst, sim = _top_k(dense, 0, kk)
    return _symmetrised(n, [src], [dst], [sim])
