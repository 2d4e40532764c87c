"""Features, graph, Leiden determinism, composition hash, display pruning, parameters."""

from __future__ import annotations

import random

import numpy as np
import pytest

from clustering.domain.annotations import EmptyDatasetError, annotation_table_build
from clustering.domain.features import NoFeaturesError, feature_matrix_build
from clustering.domain.hashing import composition_hash
from clustering.domain.leiden import leiden_partition
from clustering.domain.params import ClusteringParams, InvalidParameters
from clustering.domain.pipeline import cluster_table
from clustering.domain.similarity import knn_graph_build
from tests.conftest import planted_rows


def test_composition_hash_is_order_independent() -> None:
    ids = [f"NCBIGene:{i}" for i in range(50)]
    shuffled = ids[:]
    random.Random(3).shuffle(shuffled)
    assert composition_hash(ids, "phenotype") == composition_hash(shuffled, "phenotype")
    assert composition_hash(ids + ids[:3], "phenotype") == composition_hash(ids, "phenotype")


def test_composition_hash_depends_on_members_and_type() -> None:
    ids = ["a", "b", "c"]
    assert composition_hash(ids, "phenotype") != composition_hash(ids, "functional")
    assert composition_hash(ids, "phenotype") != composition_hash(["a", "b"], "phenotype")
    # the documented recipe, computed independently
    import hashlib

    text = '{"cluster_type":"phenotype","members":["a","b","c"]}'
    assert (
        composition_hash(["c", "a", "b"], "phenotype") == hashlib.sha256(text.encode()).hexdigest()
    )


def test_composition_hash_rejects_empty() -> None:
    with pytest.raises(ValueError):
        composition_hash([], "phenotype")


def test_annotation_table_is_sorted_and_deduplicated() -> None:
    rows = [
        ("e2", "B", "t1", "n1", "c"),
        ("e1", "A", "t2", "n2", "c"),
        ("e1", "A", "t2", "n2", "c"),
    ]
    table = annotation_table_build(rows)
    assert table.entity_ids == ["e1", "e2"]
    assert table.term_ids == ["t1", "t2"]
    assert table.matrix.nnz == 2
    with pytest.raises(EmptyDatasetError):
        annotation_table_build([])


def test_features_filter_and_information_content() -> None:
    rows = []
    for i in range(10):
        rows.append((f"e{i}", f"S{i}", "everyone", "n", "c"))  # in all: dropped (fraction)
        if i < 2:
            rows.append((f"e{i}", f"S{i}", "rare", "n", "c"))  # in 2 < 3: dropped (size)
        if i < 4:
            rows.append((f"e{i}", f"S{i}", "kept", "n", "c"))
    table = annotation_table_build(rows)
    features = feature_matrix_build(table, min_term_size=3, max_term_fraction=0.5)
    kept = [table.term_ids[j] for j in features.term_indices]
    assert kept == ["kept"]
    assert features.weights[0] == pytest.approx(-np.log(4 / 10))
    assert features.matrix[0, 0] == pytest.approx(-np.log(4 / 10))
    with pytest.raises(NoFeaturesError, match="min_term_size"):
        feature_matrix_build(table, min_term_size=5, max_term_fraction=0.5)


def test_knn_graph_is_symmetric_without_self_loops(planted_table) -> None:
    features = feature_matrix_build(planted_table)
    graph = knn_graph_build(features.matrix, k=5, block=7)  # small blocks exercise chunking
    assert graph.edges.shape[0] > 0
    assert (graph.edges[:, 0] < graph.edges[:, 1]).all()
    assert len({tuple(e) for e in graph.edges.tolist()}) == graph.edges.shape[0]
    assert ((graph.weights > 0) & (graph.weights <= 1 + 1e-9)).all()
    whole = knn_graph_build(features.matrix, k=5, block=1024)
    np.testing.assert_array_equal(graph.edges, whole.edges)
    # every vertex has at least k neighbours after union symmetrisation
    degree = np.bincount(graph.edges.ravel(), minlength=graph.n_vertices)
    assert (degree >= 5).all()


def test_leiden_is_deterministic_and_recovers_planted_groups(planted_table) -> None:
    graph = knn_graph_build(feature_matrix_build(planted_table).matrix, k=5)
    first = leiden_partition(graph, resolution=1.0, seed=42)
    second = leiden_partition(graph, resolution=1.0, seed=42)
    assert first.membership == second.membership
    assert first.modularity > 0.3
    groups: dict[str, set[int]] = {}
    for entity, label in zip(planted_table.entity_ids, first.membership, strict=True):
        groups.setdefault(entity[:3], set()).add(label)
    assert all(len(labels) == 1 for labels in groups.values()), groups
    assert len({next(iter(v)) for v in groups.values()}) == 3


def test_same_rows_in_any_order_give_the_same_clusters() -> None:
    rows = planted_rows(groups=4, size=15)
    shuffled = rows[:]
    random.Random(11).shuffle(shuffled)
    params = ClusteringParams(k=5, min_cluster_size=5)
    a = cluster_table(annotation_table_build(rows), params, cluster_type="functional")
    b = cluster_table(annotation_table_build(shuffled), params, cluster_type="functional")
    assert [c.composition_hash for c in a.clusters] == [c.composition_hash for c in b.clusters]
    assert len(a.clusters) == 4
    assert all(c.enrichment and c.enrichment[0].fdr < 0.05 for c in a.clusters)


def test_small_communities_are_reported_unclustered() -> None:
    rows = planted_rows(groups=3, size=12)
    # two loners sharing one private term with each other only
    rows += [("Z1", "LONE1", "Tz", "z", "CAT"), ("Z2", "LONE2", "Tz", "z", "CAT")]
    rows += [("Z3", "LONE3", "Tz", "z", "CAT")]
    result = cluster_table(
        annotation_table_build(rows), ClusteringParams(k=5, min_cluster_size=10), cluster_type="x"
    )
    assert {"Z1", "Z2", "Z3"} <= {entity for entity, _ in result.unclustered}
    clustered = {i for c in result.clusters for i in c.member_ids}
    assert not clustered & {entity for entity, _ in result.unclustered}
    assert len(clustered) + len(result.unclustered) == 39


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("k", 1),
        ("resolution", 0),
        ("resolution", -1.0),
        ("seed", -1),
        ("min_cluster_size", 1),
        ("max_term_fraction", 1.5),
        ("fdr_threshold", 0),
        ("algorithm", "louvain"),
        ("k", True),
        ("stability_repeats", -1),
        ("stability_repeats", 101),
        ("stability_fraction", 0.3),
        ("stability_fraction", 1.0),
        ("null_repeats", 1),
        ("null_repeats", 201),
        ("evidence_jaccard", 0),
        ("evidence_jaccard", 1.5),
    ],
)
def test_bad_parameters_name_the_field(field: str, value: object) -> None:
    with pytest.raises(InvalidParameters) as info:
        ClusteringParams.from_dict({field: value})
    assert set(info.value.errors) == {field}


def test_unknown_parameter_is_rejected() -> None:
    with pytest.raises(InvalidParameters) as info:
        ClusteringParams.from_dict({"kk": 3})
    assert info.value.errors == {"kk": "unknown parameter"}
