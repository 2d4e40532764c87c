"""What an LLM step knows about one cluster: a plain, ORM-free snapshot.

Built by the pipeline from a stored ``Cluster`` and its ``TermEnrichment`` rows; prompts, the
extractive provider, entity validation and the judge all read only this.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

ClusterType = Literal["functional", "phenotype"]

#: Categories whose terms count as pathways (functional clusters): listed pathways must be copied
#: verbatim from terms of these categories.
PATHWAY_CATEGORIES = frozenset({"WikiPathways", "Reactome", "KEGG", "Pathway"})

ENRICHED = "enriched"
DEPLETED = "depleted"


@dataclass(frozen=True)
class TermRow:
    """One significant term of a cluster.

    ``fdr`` and ``p_value`` are Benjamini-Hochberg adjusted and raw one-sided hypergeometric
    p-values of the term's ``direction`` (``enriched``: over-represented, ``depleted``:
    under-represented); ``overlap`` is the number of cluster members annotated to the term,
    ``term_size`` the number of dataset entities annotated to it; ``fold_enrichment`` =
    (overlap/size)/(term_size/N). ``evidence_rank`` is the term's rank among the cluster's
    non-redundant evidence of its category and direction (None when hidden as redundant);
    ``represents`` the significant terms it stands for (itself included); ``branches`` the
    names of its top-level ontology branches (HPO), empty without a DAG.
    """

    category: str
    term_id: str
    name: str
    fdr: float
    p_value: float
    overlap: int
    term_size: int
    fold_enrichment: float
    direction: str = ENRICHED
    evidence_rank: int | None = None
    represents: int = 1
    branches: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClusterContext:
    """A cluster as the LLM steps see it.

    ``members`` are (entity_id, symbol) pairs sorted by entity id; ``terms`` are the significant
    terms of both directions sorted by FDR ascending; ``dataset_symbols`` holds every symbol of
    the dataset (for entity validation: a dataset symbol named in a summary must be a member)
    and ``dataset_size`` its number of entities N (0 when unknown).
    Quality figures (None when not measured): ``stability`` (mean best-match Jaccard over
    subsamples), ``modularity_z``, ``specificity`` (Dice of the best evidence term) and the
    ``derived_confidence`` computed from them; ``signature`` the most central member symbols;
    ``traits`` the inheritance and syndromicity figures (see clustering.domain.traits).
    """

    cluster_type: ClusterType
    cluster_number: int
    size: int
    members: tuple[tuple[str, str], ...]
    terms: tuple[TermRow, ...]
    dataset_symbols: frozenset[str] = field(default_factory=frozenset)
    dataset_slug: str = ""
    dataset_size: int = 0
    stability: float | None = None
    modularity_z: float | None = None
    specificity: float | None = None
    derived_confidence: str = ""
    signature: tuple[str, ...] = ()
    traits: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def symbols(self) -> list[str]:
        """Member symbols in member order."""
        return [symbol for _, symbol in self.members]

    def coverage(self, term: TermRow) -> float:
        """Share of the cluster's members annotated to ``term`` (0..1)."""
        return term.overlap / self.size if self.size else 0.0

    def terms_by_category(self, direction: str = ENRICHED) -> dict[str, list[TermRow]]:
        """Significant terms of ``direction`` grouped by category, each list by FDR ascending."""
        grouped: dict[str, list[TermRow]] = {}
        for term in self.terms:
            if term.direction == direction:
                grouped.setdefault(term.category, []).append(term)
        return grouped

    def evidence(self, direction: str = ENRICHED) -> dict[str, list[TermRow]]:
        """The cluster's non-redundant evidence of ``direction`` per category, in rank order.

        A cluster stored before evidence selection existed has no ranked term; all of its
        significant terms of the direction then count as evidence, by FDR.
        """
        grouped = self.terms_by_category(direction)
        ranked = any(t.evidence_rank is not None for rows in grouped.values() for t in rows)
        if not ranked:
            return grouped
        return {
            category: sorted(
                (t for t in rows if t.evidence_rank is not None),
                key=lambda t: (t.evidence_rank or 0, t.fdr, t.term_id),
            )
            for category, rows in grouped.items()
            if any(t.evidence_rank is not None for t in rows)
        }

    @property
    def inheritance(self) -> dict[str, Any]:
        """``traits["inheritance"]`` or {} (see clustering.domain.traits.cluster_inheritance)."""
        value = self.traits.get("inheritance")
        return value if isinstance(value, dict) else {}

    @property
    def syndromicity(self) -> dict[str, Any]:
        """``traits["syndromicity"]`` or {} (see clustering.domain.traits)."""
        value = self.traits.get("syndromicity")
        return value if isinstance(value, dict) else {}

    def supported_modes(self) -> list[str]:
        """Codes of the inheritance modes the data support (share or enrichment)."""
        return [m["code"] for m in self.inheritance.get("modes", []) if m.get("supported")]
