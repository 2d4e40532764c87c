"""`hpo-ndd`: NDD genes x HPO phenotypic-abnormality terms, from the hpo3 package.

Source: Human Phenotype Ontology (https://hpo.jax.org), release 2025-11-24 as shipped inside the
``hpo3`` package (module ``pyhpo``), gene-to-phenotype annotations included. Licence: the HPO is
free to use under the HPO Consortium's licence; it asks that HPO and its version be acknowledged
wherever HPO content is displayed (see :data:`HPO_NOTICE`).
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import version

from clustering.domain.annotations import AnnotationTable, annotation_table_build

NDD_ROOT = "HP:0012759"  # Neurodevelopmental abnormality
PHENOTYPIC_ABNORMALITY = "HP:0000118"
CATEGORY = "HPO"


def hpo_release() -> str:
    """The HPO release shipped in the installed hpo3 package, e.g. "2025-11-24"."""
    from pyhpo import Ontology

    Ontology()
    return str(Ontology.version())


HPO_NOTICE = (
    "This service uses the Human Phenotype Ontology ({release}; "
    "https://hpo.jax.org). Find out more at http://www.human-phenotype-ontology.org. "
    "Köhler S et al., The Human Phenotype Ontology in 2021, Nucleic Acids Res 49(D1):D1207-D1217."
)


def _ndd_rows() -> tuple[list[tuple[str, str, str, str, str]], dict[str, frozenset[str]]]:
    from pyhpo import Ontology

    Ontology()
    root = Ontology.get_hpo_object(PHENOTYPIC_ABNORMALITY)
    ndd = Ontology.get_hpo_object(NDD_ROOT)
    ancestors_of: dict[int, frozenset[int]] = {}
    name_of: dict[int, tuple[str, str]] = {}

    def ancestors(term_int: int) -> frozenset[int]:
        cached = ancestors_of.get(term_int)
        if cached is None:
            term = Ontology[term_int]
            cached = frozenset(int(p) for p in term.all_parents)
            ancestors_of[term_int] = cached
            name_of[term_int] = (term.id, term.name)
        return cached

    root_int = int(root)
    ndd_int = int(ndd)
    rows: list[tuple[str, str, str, str, str]] = []
    used: set[int] = set()
    for gene in sorted(ndd.genes, key=int):
        propagated: set[int] = set()
        for term_int in gene.hpo:
            up = ancestors(term_int)
            if root_int in up:  # phenotypic abnormality subtree only
                propagated.add(term_int)
                propagated.update(t for t in up if t != root_int and root_int in ancestors(t))
        if ndd_int not in propagated:
            continue
        entity_id = f"NCBIGene:{gene.id}"
        for term_int in propagated:
            term_id, term_name = name_of[term_int]
            rows.append((entity_id, gene.name, term_id, term_name, CATEGORY))
            used.add(term_int)
    term_ancestors = {
        name_of[t][0]: frozenset(name_of[a][0] for a in ancestors_of[t] if a in used) for t in used
    }
    return rows, term_ancestors


def hpo_ndd_rows() -> Iterator[tuple[str, str, str, str, str]]:
    """(entity_id, symbol, term_id, term_name, category) rows of the hpo-ndd dataset.

    Genes: every gene annotated to HP:0012759 Neurodevelopmental abnormality or a descendant.
    Terms: the gene's phenotypic-abnormality (HP:0000118 subtree, root excluded) annotations
    propagated to all their ancestors (true-path rule). Entity ids are "NCBIGene:<id>".
    """
    rows, _ = _ndd_rows()
    return iter(rows)


def hpo_ndd_load() -> AnnotationTable:
    """The hpo-ndd annotation table (about 2,900 genes), with the HPO DAG as term ancestors."""
    rows, term_ancestors = _ndd_rows()
    return annotation_table_build(rows, term_ancestors=term_ancestors)


def hpo_ndd_genes() -> list[tuple[str, str]]:
    """(entity_id, symbol) of the NDD genes, sorted by entity id."""
    table = hpo_ndd_load()
    return list(zip(table.entity_ids, table.symbols, strict=True))


def hpo_package_version() -> str:
    """Version of the installed hpo3 package."""
    return version("hpo3")
