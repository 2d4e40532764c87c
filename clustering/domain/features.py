"""Information-content weighted feature matrix."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

from .annotations import AnnotationTable


class NoFeaturesError(ValueError):
    """No term passes the feature filters, so nothing can be clustered."""


@dataclass(frozen=True)
class FeatureMatrix:
    """Weighted features.

    Attributes:
        matrix: CSR float64 (N, F): entity x kept term, each 1 replaced by the term's weight.
        term_indices: indices into the annotation table's terms of the F kept terms.
        weights: information content of each kept term, -ln(n_t / N), natural log (nats).
    """

    matrix: sparse.csr_matrix
    term_indices: np.ndarray
    weights: np.ndarray


def feature_matrix_build(
    table: AnnotationTable, *, min_term_size: int = 3, max_term_fraction: float = 0.5
) -> FeatureMatrix:
    """Keep terms present in >= ``min_term_size`` entities and in < ``max_term_fraction`` of all
    entities (drops near-universal terms such as the ontology root), weighted by information
    content within the dataset, IC(t) = -ln(n_t / N) (Resnik 1995, computed on this dataset).

    Raises:
        NoFeaturesError: no term passes the filters.
    """
    n = table.n_entities
    sizes = table.term_sizes()
    keep = (sizes >= min_term_size) & (sizes < max_term_fraction * n)
    term_indices = np.flatnonzero(keep)
    if term_indices.size == 0:
        raise NoFeaturesError(
            f"no term is present in at least {min_term_size} of {n} entities and in fewer than "
            f"{max_term_fraction:.0%} of them; lower min_term_size or raise max_term_fraction"
        )
    weights = -np.log(sizes[term_indices] / n)
    sub = table.matrix[:, term_indices].astype(np.float64)
    weighted = sparse.csr_matrix(sub @ sparse.diags(weights))
    return FeatureMatrix(matrix=weighted, term_indices=term_indices, weights=weights)
