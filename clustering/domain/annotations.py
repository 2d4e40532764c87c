"""An entity x term annotation table: the input of clustering and enrichment.

Pure data, no Django. Built from (entity_id, symbol, term_id, term_name, category) rows; entities
and terms are sorted by id so that equal inputs give equal matrices, whatever the row order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from scipy import sparse

if TYPE_CHECKING:
    from .traits import EntityTraits


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
            Categories with ancestors use the elim evidence selection, the others a similarity
            filter (see :mod:`clustering.domain.evidence`); no ancestry is ever guessed.
        traits: supplementary per-entity data (mode of inheritance, syndromicity) reported per
            cluster but never used as features; None when the dataset has none.
    """

    entity_ids: list[str]
    symbols: list[str]
    term_ids: list[str]
    term_names: list[str]
    term_categories: list[str]
    matrix: sparse.csr_matrix
    term_ancestors: Mapping[str, frozenset[str]] = field(default_factory=dict)
    traits: EntityTraits | None = None

    @property
    def n_entities(self) -> int:
        """Number of entities N."""
        return len(self.entity_ids)

    @property
    def n_terms(self) -> int:
        """Number of terms T."""
        return len(self.term_ids)

    def term_name_of(self, term_id: str) -> str:
        """The name of the term with ``term_id`` (the id itself when unknown)."""
        index = self._term_index().get(term_id)
        return self.term_names[index] if index is not None else term_id

    def _term_index(self) -> dict[str, int]:
        cached = self.__dict__.get("_term_index_cache")
        if cached is None:
            cached = {t: j for j, t in enumerate(self.term_ids)}
            object.__setattr__(self, "_term_index_cache", cached)
        return cached

    def term_sizes(self) -> np.ndarray:
        """Entities annotated to each term, shape (T,), int64."""
        return np.asarray(self.matrix.sum(axis=0)).ravel().astype(np.int64)


def annotation_table_build(
    rows: Iterable[tuple[str, str, str, str, str]],
    *,
    term_ancestors: Mapping[str, frozenset[str]] | None = None,
    traits: Callable[[list[str]], EntityTraits] | None = None,
) -> AnnotationTable:
    """Build an :class:`AnnotationTable` from (entity_id, symbol, term_id, term_name, category).

    Duplicate rows are merged. The first symbol seen for an entity and the first name/category
    seen for a term win (loaders validate consistency before calling this). ``traits``, when
    given, builds the supplementary data for the sorted entity ids.

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
        traits=traits(entity_ids) if traits is not None else None,
    )
