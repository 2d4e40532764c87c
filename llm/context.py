"""What an LLM step knows about one cluster: a plain, ORM-free snapshot.

Built by the pipeline from a stored ``Cluster`` and its ``TermEnrichment`` rows; prompts, the
extractive provider, entity validation and the judge all read only this.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ClusterType = Literal["functional", "phenotype"]

#: Categories whose terms count as pathways (functional clusters): listed pathways must be copied
#: verbatim from terms of these categories.
PATHWAY_CATEGORIES = frozenset({"WikiPathways", "Reactome", "KEGG", "Pathway"})


@dataclass(frozen=True)
class TermRow:
    """One enriched term of a cluster.

    ``fdr`` and ``p_value`` are Benjamini-Hochberg adjusted and raw one-sided hypergeometric
    p-values; ``overlap`` is the number of cluster members annotated to the term, ``term_size`` the
    number of dataset entities annotated to it; ``fold_enrichment`` = (overlap/size)/(term_size/N).
    """

    category: str
    term_id: str
    name: str
    fdr: float
    p_value: float
    overlap: int
    term_size: int
    fold_enrichment: float


@dataclass(frozen=True)
class ClusterContext:
    """A cluster as the LLM steps see it.

    ``members`` are (entity_id, symbol) pairs sorted by entity id; ``terms`` are sorted by FDR
    ascending; ``dataset_symbols`` holds every symbol of the dataset (for entity validation: a
    dataset symbol named in a summary must be a member).
    """

    cluster_type: ClusterType
    cluster_number: int
    size: int
    members: tuple[tuple[str, str], ...]
    terms: tuple[TermRow, ...]
    dataset_symbols: frozenset[str] = field(default_factory=frozenset)
    dataset_slug: str = ""

    @property
    def symbols(self) -> list[str]:
        """Member symbols in member order."""
        return [symbol for _, symbol in self.members]

    def terms_by_category(self) -> dict[str, list[TermRow]]:
        """Terms grouped by category, each list sorted by FDR ascending."""
        grouped: dict[str, list[TermRow]] = {}
        for term in self.terms:
            grouped.setdefault(term.category, []).append(term)
        return grouped
