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
from clustering.domain.traits import MODE_BY_HPO_ID, EntityTraits, entity_traits_build

NDD_ROOT = "HP:0012759"  # Neurodevelopmental abnormality
PHENOTYPIC_ABNORMALITY = "HP:0000118"
MODE_OF_INHERITANCE = "HP:0000005"
NERVOUS_SYSTEM = "HP:0000707"  # Abnormality of the nervous system
SKULL_SIZE = "HP:0000240"  # Abnormality of skull size: micro-/macrocephaly count as neurological
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


def _gene_traits() -> dict[str, tuple[frozenset[str], float | None]]:
    """entity id -> (mode codes, share of direct phenotype annotations in the nervous system)."""
    from pyhpo import Ontology

    Ontology()
    root = int(Ontology.get_hpo_object(PHENOTYPIC_ABNORMALITY))
    nervous = {
        int(Ontology.get_hpo_object(NERVOUS_SYSTEM)),
        int(Ontology.get_hpo_object(SKULL_SIZE)),
    }
    mode_ints = {
        int(Ontology.get_hpo_object(hpo_id)): mode.code for hpo_id, mode in MODE_BY_HPO_ID.items()
    }
    up_cache: dict[int, frozenset[int]] = {}

    def up(term_int: int) -> frozenset[int]:
        found = up_cache.get(term_int)
        if found is None:
            found = frozenset(int(p) for p in Ontology[term_int].all_parents) | {term_int}
            up_cache[term_int] = found
        return found

    out: dict[str, tuple[frozenset[str], float | None]] = {}
    for gene in Ontology.get_hpo_object(NDD_ROOT).genes:
        codes: set[str] = set()
        phenotypes = neurological = 0
        for term_int in gene.hpo:
            lineage = up(term_int)
            codes.update(mode_ints[t] for t in lineage if t in mode_ints)
            if root in lineage and term_int != root:
                phenotypes += 1
                if lineage & nervous:
                    neurological += 1
        out[f"NCBIGene:{gene.id}"] = (
            frozenset(codes),
            neurological / phenotypes if phenotypes else None,
        )
    return out


TRAITS_SOURCE = (
    "HPO gene annotations (hpo3 package): modes of inheritance from the HP:0000005 subtree; "
    "NDD-predominant = at least half of a gene's phenotypic-abnormality annotations under "
    "HP:0000707 or HP:0000240"
)


def hpo_ndd_traits(entity_ids: list[str]) -> EntityTraits:
    """Mode of inheritance and syndromicity data of the NDD genes, aligned with ``entity_ids``
    (entities that are not NDD genes get none); see :mod:`clustering.domain.traits`."""
    return entity_traits_build(entity_ids, _gene_traits(), source=TRAITS_SOURCE)


def hpo_ndd_rows() -> Iterator[tuple[str, str, str, str, str]]:
    """(entity_id, symbol, term_id, term_name, category) rows of the hpo-ndd dataset.

    Genes: every gene annotated to HP:0012759 Neurodevelopmental abnormality or a descendant.
    Terms: the gene's phenotypic-abnormality (HP:0000118 subtree, root excluded) annotations
    propagated to all their ancestors (true-path rule). Entity ids are "NCBIGene:<id>".
    """
    rows, _ = _ndd_rows()
    return iter(rows)


def hpo_ndd_load() -> AnnotationTable:
    """The hpo-ndd annotation table (about 2,900 genes), with the HPO DAG as term ancestors and
    the genes' modes of inheritance and syndromicity as supplementary traits (the inheritance
    subtree is not a feature: it is outside HP:0000118)."""
    rows, term_ancestors = _ndd_rows()
    return annotation_table_build(rows, term_ancestors=term_ancestors, traits=hpo_ndd_traits)


def hpo_ndd_genes() -> list[tuple[str, str]]:
    """(entity_id, symbol) of the NDD genes, sorted by entity id."""
    rows, _ = _ndd_rows()
    return sorted({(entity_id, symbol) for entity_id, symbol, *_ in rows})


def hpo_package_version() -> str:
    """Version of the installed hpo3 package."""
    return version("hpo3")
