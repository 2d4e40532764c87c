"""Term enrichment and depletion of a cluster against the dataset background.

Both tails of the hypergeometric test, each with its own Benjamini-Hochberg family over every
tested term: over-representation (``direction="enriched"``, P(X >= k)) and under-representation
(``direction="depleted"``, P(X <= k)). Which significant terms are *shown* as a cluster's
evidence is decided by :mod:`clustering.domain.evidence`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from .annotations import AnnotationTable

ENRICHED = "enriched"
DEPLETED = "depleted"
DIRECTIONS = (ENRICHED, DEPLETED)


@dataclass(frozen=True)
class TermEnrichmentResult:
    """One term's over- or under-representation in a cluster.

    Attributes:
        term_index: index into the annotation table's terms.
        term_id, term_name, category: copied from the table.
        overlap: cluster members annotated to the term (k).
        term_size: dataset entities annotated to the term (K).
        p_value: one-sided hypergeometric p-value, X ~ Hypergeom(N, K, n): P(X >= k) for
            ``enriched``, P(X <= k) for ``depleted``.
        fdr: Benjamini-Hochberg adjusted p-value within the cluster and direction.
        fold_enrichment: (k / n) / (K / N); below 1 for depleted terms.
        overlap_members: symbols of the overlapping members, sorted.
        ancestor_ids: ids of this term's ontology ancestors (DAG categories only) that are also
            significant in the same direction in this cluster.
        direction: ``enriched`` or ``depleted``.
        cluster_size: n, the number of cluster members (for coverage).
        elim_p_value: the term's p-value after the elim step removed the genes of its shown
            descendants (DAG categories, enriched only; see :mod:`clustering.domain.evidence`).
        evidence_rank: 1-based rank among the shown (non-redundant) terms of its category and
            direction; None when the term is hidden as redundant.
        represents: significant terms this shown term stands for, itself included (>= 1); 0
            for a hidden term.
        hidden_by: the shown term that stands for this hidden one ("" when shown).
        branches: names of the term's top-level ontology branches (DAG categories: its
            ancestors, or itself, that have no ancestor in the table, e.g. HPO "Abnormality of
            head or neck"); empty without a DAG.
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
    direction: str = ENRICHED
    cluster_size: int = 0
    elim_p_value: float | None = None
    evidence_rank: int | None = None
    represents: int = 1
    hidden_by: str = ""
    branches: tuple[str, ...] = ()

    @property
    def coverage(self) -> float:
        """Share of the cluster's members annotated to the term, overlap / n (0..1)."""
        return self.overlap / self.cluster_size if self.cluster_size else 0.0

    @property
    def shown(self) -> bool:
        """True when the term is part of the cluster's non-redundant evidence list."""
        return self.evidence_rank is not None


def hypergeometric_sf(overlap: np.ndarray, term_size: np.ndarray, n: int, total: int) -> np.ndarray:
    """One-sided P(X >= overlap) for X ~ Hypergeom(population ``total``, successes ``term_size``,
    draws ``n``), element-wise (scipy.stats.hypergeom.sf(overlap - 1, ...))."""
    return np.asarray(stats.hypergeom.sf(overlap - 1, total, term_size, n), dtype=np.float64)


def hypergeometric_cdf(
    overlap: np.ndarray, term_size: np.ndarray, n: int, total: int
) -> np.ndarray:
    """One-sided P(X <= overlap) for X ~ Hypergeom(``total``, ``term_size``, ``n``), element-wise:
    the lower tail used for depletion.

    Computed as the upper tail of the complement, P(Y >= n - overlap) with Y ~ Hypergeom(total,
    total - term_size, n) (the members drawn without the term): exact, accurate for tiny values,
    and several times faster in scipy than ``hypergeom.cdf``.
    """
    return hypergeometric_sf(n - overlap, total - term_size, n, total)


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
    direction: str = ENRICHED,
) -> list[TermEnrichmentResult]:
    """Terms over- (``direction="enriched"``) or under-represented (``"depleted"``) in a
    cluster at FDR < ``fdr_threshold``, sorted by p-value then id.

    Tested terms are every term with at least ``min_term_size`` entities in the dataset (the BH
    family size m is their count, including terms with no overlap); the background is all N
    entities of the dataset; the test is the one-sided hypergeometric test of the direction
    (Fisher's exact test, one-sided). A depleted term needs an expected overlap large enough
    that seeing so few members is unlikely, so depletion is only found for common terms.

    Raises:
        ValueError: unknown ``direction``.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
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
    if direction == ENRICHED:
        hit = overlaps > 0
        p[hit] = hypergeometric_sf(overlaps[hit], sizes[tested][hit], n, total)
    else:
        # fewer members than expected; an overlap at or above expectation cannot be depleted
        expected = sizes[tested] * n / total
        low = overlaps < expected
        p[low] = hypergeometric_cdf(overlaps[low], sizes[tested][low], n, total)
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
        top = sorted(a for a in ancestors if not table.term_ancestors.get(a)) if ancestors else []
        if term_id in table.term_ancestors and not ancestors:
            top = [term_id]
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
                direction=direction,
                cluster_size=int(n),
                branches=tuple(sorted(table.term_name_of(a) for a in top)),
            )
        )
    results.sort(key=lambda r: (r.p_value, r.term_id))
    return results


def significance_cutoff(results: Sequence[TermEnrichmentResult]) -> float:
    """The largest raw p-value among ``results`` (all significant at the BH threshold): the
    step-up rejection threshold, used as the elim test's cutoff. 0 for no results."""
    return max((r.p_value for r in results), default=0.0)
