"""An entity x term annotation table: the input of clustering and enrichment.

Pure data, no Django. Built from (entity_id, symbol, term_id, term_name, category) rows; entities
and terms are sorted by id so that equal inputs give equal matrices, whatever the row order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse


class EmptyDatasetError(ValueError):
    """The annotation rows contain no entity or no term."""


@dataclass(frozen=True)
class AnnotationTable:
    """Binary entity x term annotations.

    Attributes:
        entity_ids: sorted entity identifiers (length N).
        symbols: display symbol of each entity, aligned with ``entity_ids``.
        term_ids: sorted term identifiers (length T).
        term_names: aligned with ``term_ids``.
        term_categories: aligned with ``term_ids`` (e.g. "HPO", "GO:BP", "WikiPathways").
        matrix: CSR matrix of shape (N, T), dtype uint8, 1 where the entity has the term.
        term_ancestors: term id -> ids of its ancestors (DAG ontologies); empty when unknown.
        inclusion_categories: categories whose DAG is not shipped with the data (GO in the Enrichr
            libraries); in them a significant term counts as a parent of another significant term
            of the same category when its overlapping members include the other's and it is
            larger (see :func:`clustering.domain.enrichment.cluster_enrichment`).
    """

    entity_ids: list[str]
    symbols: list[str]
    term_ids: list[str]
    term_names: list[str]
    term_categories: list[str]
    matrix: sparse.csr_matrix
    term_ancestors: Mapping[str, frozenset[str]] = field(default_factory=dict)
    inclusion_categories: frozenset[str] = frozenset()

    @property
    def n_entities(self) -> int:
        """Number of entities N."""
        return len(self.entity_ids)

    @property
    def n_terms(self) -> int:
        """Number of terms T."""
        return len(self.term_ids)

    def term_sizes(self) -> np.ndarray:
        """Entities annotated to each term, shape (T,), int64."""
        return np.asarray(self.matrix.sum(axis=0)).ravel().astype(np.int64)


def annotation_table_build(
    rows: Iterable[tuple[str, str, str, str, str]],
    *,
    term_ancestors: Mapping[str, frozenset[str]] | None = None,
    inclusion_categories: frozenset[str] = frozenset(),
) -> AnnotationTable:
    """Build an :class:`AnnotationTable` from (entity_id, symbol, term_id, term_name, category).

    Duplicate rows are merged. The first symbol seen for an entity and the first name/category
    seen for a term win (loaders validate consistency before calling this).

    Raises:
        EmptyDatasetError: no rows.
    """
    symbol_of: dict[str, str] = {}
    term_info: dict[str, tuple[str, str]] = {}
    pairs: set[tuple[str, str]] = set()
    for entity_id, symbol, term_id, term_name, category in rows:
        symbol_of.setdefault(entity_id, symbol)
        term_info.setdefault(term_id, (term_name, category))
        pairs.add((entity_id, term_id))
    if not pairs:
        raise EmptyDatasetError("the dataset has no annotations (no entity x term rows)")
    entity_ids = sorted(symbol_of)
    term_ids = sorted(term_info)
    entity_index = {e: i for i, e in enumerate(entity_ids)}
    term_index = {t: j for j, t in enumerate(term_ids)}
    ordered = sorted((entity_index[e], term_index[t]) for e, t in pairs)
    row_idx = np.fromiter((p[0] for p in ordered), dtype=np.int64, count=len(ordered))
    col_idx = np.fromiter((p[1] for p in ordered), dtype=np.int64, count=len(ordered))
    data = np.ones(len(ordered), dtype=np.uint8)
    matrix = sparse.csr_matrix(
        (data, (row_idx, col_idx)), shape=(len(entity_ids), len(term_ids)), dtype=np.uint8
    )
    ancestors = dict(term_ancestors or {})
    return AnnotationTable(
        entity_ids=entity_ids,
        symbols=[symbol_of[e] for e in entity_ids],
        term_ids=term_ids,
        term_names=[term_info[t][0] for t in term_ids],
        term_categories=[term_info[t][1] for t in term_ids],
        matrix=matrix,
        term_ancestors={t: frozenset(ancestors.get(t, ())) for t in term_ids if t in ancestors},
        inclusion_categories=inclusion_categories,
    )
