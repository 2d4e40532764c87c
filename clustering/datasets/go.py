"""`go-ndd`: the hpo-ndd genes x GO biological processes and WikiPathways gene sets.

Source: Enrichr gene-set libraries (Ma'ayan Lab) shipped inside the ``pyenrichr`` package:
``GO_Biological_Process_2023`` (Gene Ontology, CC BY 4.0, geneontology.org) and
``WikiPathway_2023_Human`` (WikiPathways, CC0). KEGG is deliberately not used (its licence does not
allow free redistribution). Genes are matched by HGNC symbol. No GO DAG ships with the libraries
and they are not propagated, so size or inclusion says nothing about ancestry: redundant terms
are found by the similarity of their members (``clustering.domain.evidence``, jaccard). The genes'
modes of inheritance and syndromicity come from their HPO annotations (supplementary traits).
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

from clustering.domain.annotations import AnnotationTable, annotation_table_build

from .hpo import hpo_ndd_genes, hpo_ndd_traits

LIBRARIES = {
    "GO_Biological_Process_2023": "GO:BP",
    "WikiPathway_2023_Human": "WikiPathways",
}
_GO_NAME = re.compile(r"^(?P<name>.*) \((?P<id>GO:\d{7})\)$")
_WP_NAME = re.compile(r"^(?P<name>.*) (?P<id>WP\d+)$")


def enrichr_data_dir() -> Path:
    """Folder of the GMT files inside the installed pyenrichr package (not imported: it pulls
    numba at import time, which we do not need to read a text file).

    Raises:
        FileNotFoundError: pyenrichr is not installed.
    """
    spec = importlib.util.find_spec("pyenrichr")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the pyenrichr package is not installed (pip install pyenrichr)")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def parse_gmt_term(library: str, label: str) -> tuple[str, str]:
    """Split an Enrichr term label into (term_id, name).

    "Neuron Differentiation (GO:0030182)" -> ("GO:0030182", "Neuron Differentiation");
    "Glutathione Metabolism WP100" -> ("WP100", "Glutathione Metabolism"); any other label is
    its own id and name.
    """
    pattern = _GO_NAME if library.startswith("GO_") else _WP_NAME
    match = pattern.match(label.strip())
    if match:
        return match.group("id"), match.group("name").strip()
    return label.strip(), label.strip()


def read_gmt(path: Path) -> Iterator[tuple[str, list[str]]]:
    """(label, genes) per line of a GMT file (label, description, gene, gene, ...)."""
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 3:
                continue
            yield parts[0], [g.strip() for g in parts[2:] if g.strip()]


def go_ndd_rows() -> Iterator[tuple[str, str, str, str, str]]:
    """(entity_id, symbol, term_id, term_name, category) rows: each NDD gene of hpo-ndd with the
    GO biological processes and WikiPathways that list its symbol. Genes in no set are absent."""
    genes = hpo_ndd_genes()
    by_symbol = {symbol: entity_id for entity_id, symbol in genes}
    data = enrichr_data_dir()
    for library, category in LIBRARIES.items():
        for label, members in read_gmt(data / library):
            term_id, name = parse_gmt_term(library, label)
            for symbol in members:
                entity_id = by_symbol.get(symbol)
                if entity_id is not None:
                    yield entity_id, symbol, term_id, name, category


def go_ndd_load() -> AnnotationTable:
    """The go-ndd annotation table, with the HPO-derived traits of its genes."""
    return annotation_table_build(go_ndd_rows(), traits=hpo_ndd_traits)


def pyenrichr_version() -> str:
    """Version of the installed pyenrichr package."""
    return version("pyenrichr")
