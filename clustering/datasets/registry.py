"""The built-in datasets: slug -> loader and provenance."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from clustering.domain.annotations import AnnotationTable

from .go import go_ndd_load, pyenrichr_version
from .hpo import HPO_NOTICE, hpo_ndd_load, hpo_package_version, hpo_release


@dataclass(frozen=True)
class BuiltinDataset:
    """Provenance and loader of a built-in dataset (``release`` is computed lazily)."""

    slug: str
    name: str
    kind: str  # phenotype | functional
    source: str
    licence: str
    load: Callable[[], AnnotationTable]
    release: Callable[[], str]


def _go_release() -> str:
    libraries = "Enrichr GO_Biological_Process_2023 + WikiPathway_2023_Human"
    return f"{libraries} (pyenrichr {pyenrichr_version()})"


BUILTIN_DATASETS: dict[str, BuiltinDataset] = {
    "hpo-ndd": BuiltinDataset(
        slug="hpo-ndd",
        name="NDD genes x HPO phenotypes",
        kind="phenotype",
        source=(
            "Human Phenotype Ontology gene annotations (genes under HP:0012759 Neurodevelopmental "
            "abnormality), via the hpo3 package"
        ),
        licence=HPO_NOTICE,
        load=hpo_ndd_load,
        release=lambda: f"HPO {hpo_release()} (hpo3 {hpo_package_version()})",
    ),
    "go-ndd": BuiltinDataset(
        slug="go-ndd",
        name="NDD genes x GO biological processes and WikiPathways",
        kind="functional",
        source=(
            "Enrichr libraries GO_Biological_Process_2023 and WikiPathway_2023_Human (pyenrichr "
            "package), genes of hpo-ndd matched by symbol"
        ),
        licence=(
            "Gene Ontology: CC BY 4.0 (geneontology.org); WikiPathways: CC0; gene-set libraries "
            "compiled by Enrichr (Ma'ayan Lab). KEGG is not included. The genes' modes of "
            "inheritance and syndromicity come from the Human Phenotype Ontology (hpo.jax.org)."
        ),
        load=go_ndd_load,
        release=_go_release,
    ),
}
