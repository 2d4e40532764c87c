"""The built-in datasets, loaded from the installed packages (real data, offline)."""

from __future__ import annotations

import pytest

from clustering.datasets.go import go_ndd_load, parse_gmt_term
from clustering.datasets.hpo import NDD_ROOT, hpo_ndd_load, hpo_release


@pytest.fixture(scope="module")
def hpo_table():
    return hpo_ndd_load()


def test_hpo_release_is_recorded() -> None:
    assert hpo_release() == "2025-11-24"


def test_hpo_ndd_gene_count_is_plausible(hpo_table) -> None:
    assert 2500 <= hpo_table.n_entities <= 3500
    assert all(e.startswith("NCBIGene:") for e in hpo_table.entity_ids)
    assert "MECP2" in hpo_table.symbols and "SCN1A" in hpo_table.symbols


def test_hpo_annotations_are_propagated_to_ancestors(hpo_table) -> None:
    # every NDD gene carries the NDD root itself once annotations are propagated
    j = hpo_table.term_ids.index(NDD_ROOT)
    assert hpo_table.term_sizes()[j] == hpo_table.n_entities
    # true-path rule: a gene with a term has all of that term's ancestors
    m = hpo_table.matrix.tocsc()
    index = {t: k for k, t in enumerate(hpo_table.term_ids)}
    focal = index["HP:0007359"]  # Focal-onset seizure
    genes = set(m.indices[m.indptr[focal] : m.indptr[focal + 1]])
    assert genes
    for ancestor in hpo_table.term_ancestors["HP:0007359"]:
        col = index[ancestor]
        assert genes <= set(m.indices[m.indptr[col] : m.indptr[col + 1]])
    assert "HP:0001250" in hpo_table.term_ancestors["HP:0007359"]  # Seizure
    assert "HP:0000118" not in hpo_table.term_ids  # the root itself is not a feature


def test_go_ndd_uses_the_same_genes_and_both_libraries(hpo_table) -> None:
    go = go_ndd_load()
    assert set(go.entity_ids) <= set(hpo_table.entity_ids)
    assert go.n_entities >= 0.8 * hpo_table.n_entities
    assert set(go.term_categories) == {"GO:BP", "WikiPathways"}
    assert any(t.startswith("GO:") for t in go.term_ids)
    assert any(t.startswith("WP") for t in go.term_ids)
    assert not any("KEGG" in t for t in go.term_ids)


def test_gmt_labels_are_split_into_id_and_name() -> None:
    assert parse_gmt_term("GO_Biological_Process_2023", "Neuron Differentiation (GO:0030182)") == (
        "GO:0030182",
        "Neuron Differentiation",
    )
    assert parse_gmt_term("WikiPathway_2023_Human", "Glutathione Metabolism WP100") == (
        "WP100",
        "Glutathione Metabolism",
    )
    assert parse_gmt_term("WikiPathway_2023_Human", "odd label") == ("odd label", "odd label")
