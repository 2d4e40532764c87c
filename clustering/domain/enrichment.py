"""Term enrichment of a cluster against the dataset background, and display pruning."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats

from .annotations import AnnotationTable


@dataclass(frozen=True)
class TermEnrichmentResult:
    """One term's over-representation in a cluster.

    Attributes:
        term_index: index into the annotation table's terms.
        term_id, term_name, category: copied from the table.
        overlap: cluster members annotated to the term (k).
        term_size: dataset entities annotated to the term (K).
        p_value: one-sided hypergeometric P(X >= k), X ~ Hypergeom(N, K, n).
        fdr: Benjamini-Hochberg adjusted p-value within the cluster.
        fold_enrichment: (k / n) / (K / N).
        overlap_members: symbols of the overlapping members, sorted.
        ancestor_ids: ids of this term's ancestors that are also significant in the cluster.
    """

    term_index: int
    term_id: str
    term_name: str
    category: str
    overlap: int
    term_size: int
    p_value: float
    fdr: float
    fold_enrichment: float
    overlap_members: list[str]
    ancestor_ids: list[str]


def hypergeometric_sf(overlap: np.ndarray, term_size: np.ndarray, n: int, total: int) -> np.ndarray:
    """One-sided P(X >= overlap) for X ~ Hypergeom(population ``total``, successes ``term_size``,
    draws ``n``), element-wise (scipy.stats.hypergeom.sf(overlap - 1, ...))."""
    return np.asarray(stats.hypergeom.sf(overlap - 1, total, term_size, n), dtype=np.float64)


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """Benjamini & Hochberg (1995) FDR-adjusted p-values (step-up, monotone, capped at 1).

    Uses scipy.stats.false_discovery_control(method="bh"). Empty input gives empty output.
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.size == 0:
        return p.copy()
    return np.asarray(stats.false_discovery_control(p, method="bh"), dtype=np.float64)


def cluster_enrichment(
    table: AnnotationTable,
    member_indices: Sequence[int],
    *,
    min_term_size: int = 3,
    fdr_threshold: float = 0.05,
    term_sizes: np.ndarray | None = None,
) -> list[TermEnrichmentResult]:
    """Terms over-represented in a cluster, FDR < ``fdr_threshold``, sorted by p-value then id.

    Tested terms are every term with at least ``min_term_size`` entities in the dataset (the BH
    family size m is their count, including terms with no overlap, whose p-value is 1); the
    background is all N entities of the dataset; the test is one-sided hypergeometric.
    """
    members = np.asarray(sorted(member_indices), dtype=np.int64)
    n = members.size
    total = table.n_entities
    if n == 0:
        return []
    sizes = table.term_sizes() if term_sizes is None else term_sizes
    tested = np.flatnonzero(sizes >= min_term_size)
    if tested.size == 0:
        return []
    sub = table.matrix[members]
    overlaps_all = np.asarray(sub.sum(axis=0)).ravel().astype(np.int64)
    overlaps = overlaps_all[tested]
    p = np.ones(tested.size, dtype=np.float64)
    hit = overlaps > 0
    p[hit] = hypergeometric_sf(overlaps[hit], sizes[tested][hit], n, total)
    q = benjamini_hochberg(p)
    significant = np.flatnonzero(q < fdr_threshold)
    if significant.size == 0:
        return []
    sub_csc = sub.tocsc()
    results: list[TermEnrichmentResult] = []
    significant_ids = {table.term_ids[tested[i]] for i in significant}
    for i in significant:
        j = int(tested[i])
        rows = sub_csc.indices[sub_csc.indptr[j] : sub_csc.indptr[j + 1]]
        symbols = sorted(table.symbols[members[r]] for r in rows)
        term_id = table.term_ids[j]
        ancestors = table.term_ancestors.get(term_id, frozenset())
        k = int(overlaps[i])
        big_k = int(sizes[j])
        results.append(
            TermEnrichmentResult(
                term_index=j,
                term_id=term_id,
                term_name=table.term_names[j],
                category=table.term_categories[j],
                overlap=k,
                term_size=big_k,
                p_value=float(p[i]),
                fdr=float(q[i]),
                fold_enrichment=float((k / n) / (big_k / total)),
                overlap_members=symbols,
                ancestor_ids=sorted(a for a in ancestors if a in significant_ids),
            )
        )
    results.sort(key=lambda r: (r.p_value, r.term_id))
    if table.inclusion_categories:
        results = _add_inclusion_parents(results, table.inclusion_categories)
    return results


def _add_inclusion_parents(
    results: list[TermEnrichmentResult], categories: frozenset[str]
) -> list[TermEnrichmentResult]:
    """Proxy for a missing DAG: in ``categories``, term A is treated as a parent of term B when
    A is larger (term_size) and A's overlapping members include all of B's, so B says the same
    about this cluster more specifically."""
    members = {r.term_id: frozenset(r.overlap_members) for r in results}
    out: list[TermEnrichmentResult] = []
    for r in results:
        if r.category not in categories:
            out.append(r)
            continue
        mine = members[r.term_id]
        parents = {
            a.term_id
            for a in results
            if a.category == r.category and a.term_size > r.term_size and mine <= members[a.term_id]
        }
        if parents:
            r = replace(r, ancestor_ids=sorted(parents | set(r.ancestor_ids)))
        out.append(r)
    return out


@dataclass(frozen=True)
class DisplayTerm:
    """A term as offered for display selection: id, FDR and its listed ancestors."""

    term_id: str
    fdr: float
    ancestor_ids: frozenset[str]


def display_terms_select(terms: Sequence[DisplayTerm], *, limit: int) -> list[str]:
    """Pick up to ``limit`` non-redundant terms for display, most significant first.

    A parent term is pruned when a more specific descendant is listed among ``terms`` (HPO and GO
    are DAGs, so "Seizure" adds nothing beside "Focal seizure"): only terms that are no other
    listed term's ancestor remain, ordered by FDR ascending (ties by term id).

    Returns:
        term ids in display order.
    """
    if limit <= 0:
        return []
    listed_ancestors: set[str] = set()
    for term in terms:
        listed_ancestors |= term.ancestor_ids
    kept = [t for t in terms if t.term_id not in listed_ancestors]
    kept.sort(key=lambda t: (t.fdr, t.term_id))
    return [t.term_id for t in kept[:limit]]
