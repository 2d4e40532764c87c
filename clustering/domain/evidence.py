"""Evidence selection: per cluster, category and direction, a ranked list of non-redundant,
specific terms.

A cluster of 577 genes can have a thousand significant HPO terms, most of them broad ancestors
("Abnormal lip morphology") of the specific terms that carry the signal ("Thin upper lip
vermilion"). Listing the lowest FDRs shows the ancestors; this module decides which significant
terms are *shown* and which are hidden as redundant, and what each shown term stands for.

Methods, chosen per category:

* **elim** (categories with an ontology DAG in the table, e.g. HPO): the elim algorithm of
  topGO (Alexa, Rahnenführer & Lengauer 2006, Bioinformatics 22:1600-1607,
  doi:10.1093/bioinformatics/btl140). Significant terms are visited from the most specific up;
  a term is tested again after removing from its gene set every gene annotated to a descendant
  already found significant in this pass; it is shown only if it stays significant (elim p-value
  <= the cluster's BH step-up cutoff), and then its own genes are removed from its ancestors in
  turn. So a parent is hidden exactly when shown descendants explain its signal, and kept when
  it remains significant without their genes.
* **jaccard** (categories without a DAG, e.g. the Enrichr GO and WikiPathways libraries, or
  imported tables): a greedy similarity filter in order of p-value, as in the term clustering of
  DAVID (Huang et al. 2007, Genome Biol 8:R183) and Enrichr: a term is hidden when the Jaccard
  index of its overlapping members with a more significant shown term's is at least
  ``jaccard_threshold``. Inclusion or size is never read as ancestry.
* Depleted terms: DAG categories show the most general depleted terms (a depleted term is hidden
  under a shown depleted ancestor); other categories use the Jaccard filter on the terms' gene
  sets in the whole dataset (a depleted term has few or no overlapping members to compare).

Shown terms are ranked by elim p-value (elim) or p-value (jaccard), then FDR and id; each carries
``represents``, the number of significant terms it stands for (itself included), and each hidden
term names the shown term that stands for it (``hidden_by``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .annotations import AnnotationTable
from .enrichment import DEPLETED, ENRICHED, TermEnrichmentResult, hypergeometric_sf

ELIM = "elim"
JACCARD = "jaccard"
#: Default Jaccard index at or above which a less significant term is hidden.
DEFAULT_JACCARD_THRESHOLD = 0.5


@dataclass(frozen=True)
class EvidenceMethod:
    """How a run selected its evidence; recorded on the run.

    Attributes:
        categories: category -> method (``elim`` or ``jaccard``).
        jaccard_threshold: the similarity filter's threshold (0..1].
    """

    categories: dict[str, str]
    jaccard_threshold: float

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable description with the references of both methods."""
        return {
            "categories": dict(sorted(self.categories.items())),
            "elim": (
                "topGO elim (Alexa et al. 2006): a term is shown only if it stays significant "
                "(p <= the cluster's BH step-up cutoff) after removing the genes of its shown "
                "descendants"
            ),
            "jaccard": (
                "greedy by p-value: a term is hidden when the Jaccard index of its overlapping "
                "members with a more significant shown term's is >= jaccard_threshold"
            ),
            "jaccard_threshold": self.jaccard_threshold,
            "depleted": (
                "elim categories: the most general depleted terms are shown; jaccard categories: "
                "the same filter on the terms' dataset gene sets"
            ),
        }


def evidence_method_for(
    table: AnnotationTable, *, jaccard_threshold: float = DEFAULT_JACCARD_THRESHOLD
) -> EvidenceMethod:
    """The method of every category of ``table``: elim where the table holds an ontology DAG for
    the category's terms (:attr:`AnnotationTable.term_ancestors`), jaccard elsewhere."""
    with_dag = {
        table.term_categories[j]
        for j, t in enumerate(table.term_ids)
        if table.term_ancestors.get(t)
    }
    categories = {c: (ELIM if c in with_dag else JACCARD) for c in set(table.term_categories)}
    return EvidenceMethod(categories=categories, jaccard_threshold=jaccard_threshold)


class TermBits:
    """Gene sets of a table's terms as Python-int bitsets over entity indices (bit i = entity
    i), built lazily and cached: build one per table and pass it to :func:`evidence_select`
    for every cluster of a run."""

    def __init__(self, table: AnnotationTable) -> None:
        self._csc = table.matrix.tocsc()
        self._n = table.n_entities
        self._cache: dict[int, int] = {}

    def of_indices(self, indices: Sequence[int] | np.ndarray) -> int:
        """Bitset of the given entity indices."""
        mask = np.zeros(self._n, dtype=bool)
        mask[np.asarray(indices, dtype=np.int64)] = True
        return int.from_bytes(np.packbits(mask, bitorder="little").tobytes(), "little")

    def term(self, term_index: int) -> int:
        """Bitset of the entities annotated to the term at ``term_index``."""
        bits = self._cache.get(term_index)
        if bits is None:
            start, stop = self._csc.indptr[term_index], self._csc.indptr[term_index + 1]
            bits = self.of_indices(self._csc.indices[start:stop])
            self._cache[term_index] = bits
        return bits


@dataclass
class _Decision:
    """What the selection decided for one term."""

    shown: dict[str, float] = field(default_factory=dict)  # term id -> ranking score
    hidden_by: dict[str, str] = field(default_factory=dict)
    elim_p: dict[str, float] = field(default_factory=dict)


def _apply(terms: Sequence[TermEnrichmentResult], d: _Decision) -> list[TermEnrichmentResult]:
    """Ranks (by the score in ``d.shown``, then FDR and id), represents, hidden_by, elim p."""
    stands_for: dict[str, int] = defaultdict(int)
    for rep in d.hidden_by.values():
        stands_for[rep] += 1
    order = sorted(
        (t for t in terms if t.term_id in d.shown),
        key=lambda t: (d.shown[t.term_id], t.fdr, t.term_id),
    )
    rank = {t.term_id: i for i, t in enumerate(order, start=1)}
    out: list[TermEnrichmentResult] = []
    for t in terms:
        shown = t.term_id in rank
        out.append(
            replace(
                t,
                evidence_rank=rank.get(t.term_id),
                represents=1 + stands_for[t.term_id] if shown else 0,
                hidden_by="" if shown else d.hidden_by.get(t.term_id, ""),
                elim_p_value=d.elim_p.get(t.term_id),
            )
        )
    return out


def _elim_enriched(
    terms: Sequence[TermEnrichmentResult],
    table: AnnotationTable,
    bits: TermBits,
    cluster_bits: int,
    cutoff: float,
) -> _Decision:
    n = terms[0].cluster_size
    total = table.n_entities
    by_id = {t.term_id: t for t in terms}
    ancestors = {
        t.term_id: [a for a in table.term_ancestors.get(t.term_id, ()) if a in by_id] for t in terms
    }
    depth = {t.term_id: len(table.term_ancestors.get(t.term_id, ())) for t in terms}
    removed: dict[str, int] = defaultdict(int)
    d = _Decision()
    elim_p, shown = d.elim_p, d.shown
    # a descendant has strictly more ancestors than any of its ancestors, so terms of equal depth
    # are never related and one level can be tested at once (one vectorised scipy call)
    levels: dict[int, list[TermEnrichmentResult]] = defaultdict(list)
    for t in terms:
        levels[depth[t.term_id]].append(t)
    for level in sorted(levels, reverse=True):
        group = levels[level]
        sets = [bits.term(t.term_index) & ~removed[t.term_id] for t in group]
        big_k = np.array([s.bit_count() for s in sets], dtype=np.int64)
        k = np.array([(s & cluster_bits).bit_count() for s in sets], dtype=np.int64)
        p = np.ones(len(group), dtype=np.float64)
        hit = k > 0
        if hit.any():
            p[hit] = hypergeometric_sf(k[hit], big_k[hit], n, total)
        for t, pv in zip(group, p, strict=True):
            elim_p[t.term_id] = float(pv)
            if pv <= cutoff:
                shown[t.term_id] = float(pv)
                genes = bits.term(t.term_index)
                for a in ancestors[t.term_id]:
                    removed[a] |= genes
    # a hidden term is explained by its shown descendants: the most significant one stands for it
    best: dict[str, tuple[float, int, str]] = {}
    for sid in shown:
        s = by_id[sid]
        key = (shown[sid], -s.overlap, sid)
        for a in ancestors[sid]:
            if a not in shown and (a not in best or key < best[a]):
                best[a] = key
    for t in terms:
        if t.term_id not in shown:
            d.hidden_by[t.term_id] = best[t.term_id][2] if t.term_id in best else ""
    return d


def _general_first(terms: Sequence[TermEnrichmentResult], table: AnnotationTable) -> _Decision:
    """DAG depletion: the most general depleted terms are shown, their depleted descendants
    hidden under the most significant shown ancestor."""
    by_id = {t.term_id: t for t in terms}
    d = _Decision()
    shown, hidden_by = d.shown, d.hidden_by
    order = sorted(
        terms, key=lambda t: (len(table.term_ancestors.get(t.term_id, ())), t.p_value, t.term_id)
    )
    for t in order:
        covering = [a for a in table.term_ancestors.get(t.term_id, ()) if a in shown]
        if covering:
            hidden_by[t.term_id] = min(covering, key=lambda a: (by_id[a].p_value, a))
        else:
            shown[t.term_id] = t.p_value
    return d


def _jaccard(
    terms: Sequence[TermEnrichmentResult], sets: dict[str, int], threshold: float
) -> _Decision:
    d = _Decision()
    shown, hidden_by = d.shown, d.hidden_by
    kept: list[tuple[str, int, int]] = []  # id, bits, size
    for t in sorted(terms, key=lambda t: (t.p_value, t.fdr, t.term_id)):
        mine = sets[t.term_id]
        size = mine.bit_count()
        best_id, best_j = "", -1.0
        for sid, sbits, ssize in kept:
            inter = (mine & sbits).bit_count()
            union = size + ssize - inter
            similarity = inter / union if union else 1.0
            if similarity > best_j:
                best_id, best_j = sid, similarity
        if kept and best_j >= threshold:
            hidden_by[t.term_id] = best_id
        else:
            shown[t.term_id] = t.p_value
            kept.append((t.term_id, mine, size))
    return d


def evidence_select(
    table: AnnotationTable,
    member_indices: Sequence[int],
    terms: Sequence[TermEnrichmentResult],
    *,
    method: EvidenceMethod,
    cutoff: float,
    bits: TermBits | None = None,
) -> list[TermEnrichmentResult]:
    """Mark which of a cluster's significant ``terms`` are shown as evidence.

    Args:
        table: the annotation table the terms were tested on.
        member_indices: the cluster's entity indices.
        terms: the cluster's significant terms of both directions (any order, any categories),
            as returned by :func:`~clustering.domain.enrichment.cluster_enrichment`.
        method: per-category method (see :func:`evidence_method_for`).
        cutoff: the elim significance cutoff on raw p-values: the BH step-up threshold of the
            cluster's enriched terms (:func:`~clustering.domain.enrichment.significance_cutoff`).
        bits: the table's :class:`TermBits`, shared by the clusters of a run (built when None).

    Returns:
        the same terms, in the same order, with ``evidence_rank``, ``represents``, ``hidden_by``
        (and for elim categories ``elim_p_value``) set. Ranks start at 1 per (category,
        direction).
    """
    if not terms:
        return []
    bits = bits if bits is not None else TermBits(table)
    cluster_bits = bits.of_indices(member_indices)
    groups: dict[tuple[str, str], list[TermEnrichmentResult]] = defaultdict(list)
    for t in terms:
        groups[(t.category, t.direction)].append(t)
    decided: dict[tuple[str, str], TermEnrichmentResult] = {}
    for (category, direction), group in groups.items():
        kind = method.categories.get(category, JACCARD)
        if kind == ELIM and direction == ENRICHED:
            decision = _elim_enriched(group, table, bits, cluster_bits, cutoff)
        elif kind == ELIM and direction == DEPLETED:
            decision = _general_first(group, table)
        elif direction == ENRICHED:
            sets = {t.term_id: bits.term(t.term_index) & cluster_bits for t in group}
            decision = _jaccard(group, sets, method.jaccard_threshold)
        else:
            sets = {t.term_id: bits.term(t.term_index) for t in group}
            decision = _jaccard(group, sets, method.jaccard_threshold)
        for t in _apply(group, decision):
            decided[(t.term_id, t.direction)] = t
    return [decided[(t.term_id, t.direction)] for t in terms]
