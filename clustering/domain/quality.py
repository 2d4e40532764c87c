"""A cluster's derived confidence, from its stability and the specificity of its evidence.

* **specificity**: the Dice coefficient 2k / (n + K) between the cluster (n members) and the
  gene set (K dataset entities, k of them members) of its best shown enriched evidence term:
  1 when one term annotates exactly the cluster's members, near 0 when every term covers a
  sliver of the cluster or spreads far beyond it. Unlike fold enrichment it does not grow as
  clusters get smaller.
* **derived_confidence** (computed from the data, never from a model's self-assessment):

  - ``high``: stability >= 0.75 (Hennig's "stable") and specificity >= 0.5;
  - ``medium``: stability >= 0.6 and specificity >= 0.3;
  - ``low``: anything else, including fewer than 3 enriched terms at FDR < 0.05.

  Without a stability figure (``stability_repeats`` = 0) the level rests on specificity alone
  and is at most ``medium`` (specificity >= 0.5).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from .enrichment import ENRICHED, TermEnrichmentResult

Confidence = Literal["high", "medium", "low"]

HIGH_STABILITY = 0.75
MEDIUM_STABILITY = 0.6
HIGH_SPECIFICITY = 0.5
MEDIUM_SPECIFICITY = 0.3
MIN_EVIDENCE_TERMS = 3
EVIDENCE_FDR = 0.05


def dice(overlap: int, cluster_size: int, term_size: int) -> float:
    """Dice coefficient 2k / (n + K) of a cluster and a term's gene set (0..1)."""
    total = cluster_size + term_size
    return 2 * overlap / total if total else 0.0


def specificity(terms: Iterable[TermEnrichmentResult]) -> tuple[float, str]:
    """(best Dice coefficient, its term id) over the shown enriched terms; (0.0, "") if none."""
    best, best_id = 0.0, ""
    for t in terms:
        if t.direction != ENRICHED or not t.shown:
            continue
        value = dice(t.overlap, t.cluster_size, t.term_size)
        if value > best or (value == best and best_id and t.term_id < best_id):
            best, best_id = value, t.term_id
    return best, best_id


def derived_confidence(
    *, stability: float | None, specificity_value: float, evidence_terms: int
) -> Confidence:
    """The documented confidence level (see the module docstring).

    Args:
        stability: mean best-match Jaccard over subsamples (0..1), None when not measured.
        specificity_value: see :func:`specificity`.
        evidence_terms: enriched terms with FDR < 0.05 (shown or not).
    """
    if evidence_terms < MIN_EVIDENCE_TERMS:
        return "low"
    if stability is None:
        return "medium" if specificity_value >= HIGH_SPECIFICITY else "low"
    if stability >= HIGH_STABILITY and specificity_value >= HIGH_SPECIFICITY:
        return "high"
    if stability >= MEDIUM_STABILITY and specificity_value >= MEDIUM_SPECIFICITY:
        return "medium"
    return "low"
